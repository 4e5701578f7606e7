"""``modelops-runtime drift``: one monitoring run of a ModelMonitor (drift + health), written to MLflow.

One run per CronJob Job. Reads a :class:`~modelops.contract.DriftJobConfig` from
``MODELOPS_JOB_CONFIG`` (or ``--config-file``), then:

1. resolves the version serving the stage from the registered model's alias (``production``,
   ``staging``, ``development``) with ``MlflowClient.get_model_version_by_alias``;
2. reference: the reference sample (``ARTIFACT_REFERENCE``, Parquet) logged by that version's
   training run, or ``reference_uri`` (under the operator's data URI policy, ``data_policy``);
   compared features: ``drift.columns``, else the training
   run's ``model.features`` tag (so the target column in the reference sample is left out);
3. current: the stage's prediction log over ``window`` (rows of the served registry version,
   ``feature.`` prefix stripped), or ``current_uri`` (under the same policy);
   a rollout's drift check (docs/rollout.md) pins the version (``registry_version``), the log
   partition (``log_partition``: the candidate's) and the window (``window_start``/``window_end``),
   and tags the run (``run_tags``) so the operator finds it;
4. drift with :func:`modelops.monitoring.drift.detect_drift`, health of the same window (+ feedback)
   with :func:`modelops.monitoring.health.compute_health`, the accuracy trend against this
   monitor's previous ``history_runs`` runs (found by the owner uid tag);
5. one MLflow run in ``experiment``: metrics (``METRIC_*``, ``drift_score.<column>``), the
   Evidently HTML report and a JSON summary as artifacts, tags (owner, model, stage, semver, result).

Exit codes: 0 for a run with result ``Completed`` or ``InsufficientData`` (no serving version, no
reference sample, too few rows); 2 for invalid input (config, unreadable ``reference_uri``/
``current_uri``); 1 for other faults (MLflow or storage unreachable...). A failed run is still
written when MLflow is reachable (status FAILED, result ``Failed``, ``TAG_FAILURE``), and the
one-line reason goes to stderr and the container's termination message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from modelops.api.modelversion import STAGE_ALIASES
from modelops.contract import (
    ARTIFACT_DRIFT_REPORT,
    ARTIFACT_DRIFT_SUMMARY,
    ARTIFACT_REFERENCE,
    ENV_PREDICTION_LOG_URI,
    EXIT_INVALID_INPUT,
    LOG_FEATURE_PREFIX,
    METRIC_ACCURACY,
    METRIC_CURRENT_ROWS,
    METRIC_DRIFT_SCORE_PREFIX,
    METRIC_DRIFT_SHARE,
    METRIC_DRIFTED_COLUMNS,
    METRIC_ERROR_RATE,
    METRIC_LATENCY_P50,
    METRIC_LATENCY_P95,
    METRIC_PREDICTIONS,
    TAG_FAILURE,
    TAG_MODEL_NAME,
    TAG_MODEL_STAGE,
    TAG_RESULT,
    TAG_SEMVER,
    TAG_UID,
    DriftJobConfig,
    TrainingResult,
)
from modelops.datapolicy import DataUriPolicy, DataUriRefused, classify
from modelops.monitoring.drift import DriftResult, detect_drift, sample_positions
from modelops.monitoring.health import HealthReport, compute_health
from modelops.monitoring.monitor import strip_feature_prefix
from modelops.monitoring.tables import SampledFrame, compact_pandas, read_parquet_sampled
from modelops.monitoring.window import parse_duration

from ..jobrun import EXIT_FAILED, EXIT_OK, InvalidInput, Terminated, one_line, read_config, run_main

log = logging.getLogger("modelops_runtime.drift")

#: MLflow accepts at most this many metrics per ``log_batch`` call.
MLFLOW_BATCH_METRICS = 1000
#: Longest MLflow metric key (``mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH``).
MLFLOW_MAX_KEY = 250
#: Prediction log columns the health check reads (``compute_health``).
HEALTH_COLUMNS = ("request_id", "latency_ms", "status", "prediction")
#: Seed of the drift check's row sample (``detect_drift``'s default; readers sample with it too).
DRIFT_RANDOM_STATE = 0


@dataclass
class ServedVersion:
    """The registry version holding the stage's alias and what its training run recorded."""

    registry_version: str
    run_id: str | None
    semver: str | None
    features: list[str] | None
    task: str | None


@dataclass
class Outcome:
    """Everything one monitoring run writes to MLflow."""

    result: str
    drift: DriftResult | None
    health: HealthReport
    served: ServedVersion | None
    message: str
    metrics: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    report_html: str | None = None


# -- config ---------------------------------------------------------------------------------------


def load_config(env: Mapping[str, str], config_file: str | None = None) -> DriftJobConfig:
    """Parse the job config from ``config_file`` or ``MODELOPS_JOB_CONFIG``; :class:`InvalidInput` if bad."""
    config = read_config(DriftJobConfig, env, config_file)
    canonical = {stage.lower(): stage for stage in STAGE_ALIASES}.get(config.stage.lower())
    if canonical is None:
        raise InvalidInput(f"invalid job config: stage {config.stage!r} is not one of {', '.join(STAGE_ALIASES)}")
    config.stage = canonical  # "production" and "Production" name the same stage
    try:
        parse_duration(config.window)
    except ValueError as exc:
        raise InvalidInput(f"invalid job config: window: {exc}") from exc
    return config


# -- inputs ---------------------------------------------------------------------------------------


def resolve_served_version(
    client: Any, model: str, stage: str, registry_version: str | None = None
) -> ServedVersion | None:
    """The version ``model@<stage alias>`` points to (or registry version ``registry_version`` when
    given: a rollout's drift check), with its training run's features; None when unset or missing.

    Raises what MLflow raises for anything but "not found" (translated to ``RegistryUnavailable``
    when the server is unreachable).
    """
    from mlflow.exceptions import MlflowException

    from modelops.registry.errors import is_not_found, translate_errors

    with translate_errors("resolving the served version"):
        try:
            if registry_version is not None:
                mv = client.get_model_version(model, registry_version)
            else:
                mv = client.get_model_version_by_alias(model, STAGE_ALIASES[stage])
        except MlflowException as exc:
            if is_not_found(exc):
                return None
            raise
        semver = (mv.tags or {}).get(TAG_SEMVER)
        features = task = None
        if mv.run_id:
            try:
                run = client.get_run(mv.run_id)
            except MlflowException as exc:
                if not is_not_found(exc):
                    raise
            else:
                meta = TrainingResult.from_tags(run.data.tags)
                features, task = meta.features, meta.task
                semver = semver or run.data.tags.get(TAG_SEMVER)
    return ServedVersion(str(mv.version), mv.run_id, semver, features, task)


def read_table(
    uri: str,
    fmt: str,
    policy: DataUriPolicy,
    *,
    columns: Sequence[str] | None = None,
    max_rows: int | None = None,
) -> SampledFrame:
    """A CSV/Parquet file or a built-in dataset (``sklearn://``, ``penguins://``) under the data URI
    ``policy`` (fetched as the training runtime does: :func:`modelops_runtime.train.data.fetched`).

    Parquet is read with :func:`~modelops.monitoring.tables.read_parquet_sampled`: only ``columns``
    (``None``: all) and, above ``max_rows`` rows, only the rows ``detect_drift`` would sample
    (seed 0, its default). CSV files and built-in datasets are read whole through the training
    runtime's loader (``detect_drift`` samples them in memory). Raises :class:`InvalidInput` when
    the policy refuses the URI or the file is missing or unreadable; lets connection errors
    through (exit 1, worth a retry).
    """
    from modelops_runtime.train import data as data_mod
    from modelops_runtime.train.errors import InvalidInput as TrainInvalidInput

    try:
        if classify(uri, policy) == "builtin":
            frame = data_mod.load_builtin(uri)
        else:
            fmt = data_mod.detect_format(uri, fmt)
            with data_mod.fetched(uri, fmt, policy) as source:
                if fmt == "parquet":
                    return _read_parquet(source, columns, max_rows, uri)
                frame = data_mod.read_table(source, fmt, uri)
    except DataUriRefused as exc:
        raise InvalidInput(f"{uri} refused by the data URI policy: {exc}") from exc
    except TrainInvalidInput as exc:
        raise InvalidInput(str(exc)) from exc
    names = [str(c) for c in frame.columns]
    return SampledFrame(frame, len(frame), names, [c for c in columns or () if c not in set(names)])


def _read_parquet(source: str, columns: Sequence[str] | None, max_rows: int | None, uri: str) -> SampledFrame:
    """:func:`read_parquet_sampled` of a local path or fsspec URI, with the training loader's error
    messages (naming ``uri``)."""
    import fsspec
    import pyarrow as pa

    try:
        with fsspec.open(source, mode="rb", compression="infer") as handle:
            return read_parquet_sampled(handle, columns=columns, max_rows=max_rows)
    except FileNotFoundError as exc:
        raise InvalidInput(f"dataset not found: {uri}") from exc
    except PermissionError as exc:
        raise InvalidInput(f"dataset not readable (permission denied): {uri}") from exc
    except (ConnectionError, TimeoutError):
        raise
    except ImportError as exc:  # e.g. s3:// without s3fs
        raise InvalidInput(f"cannot read {uri}: {exc}") from exc
    except (ValueError, OSError, pa.ArrowException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "404" in first or "Not Found" in first:
            raise InvalidInput(f"dataset not found: {uri}") from exc
        # The error class only: a parser's message may quote the file, and the reason reaches status.
        raise InvalidInput(f"cannot read parquet dataset {uri}: {type(exc).__name__}") from exc


def download_reference(
    client: Any, run_id: str, *, columns: Sequence[str] | None = None, max_rows: int | None = None
) -> SampledFrame | None:
    """The reference sample the training run ``run_id`` logged (``columns`` of it, at most ``max_rows``
    rows as ``detect_drift`` samples them), or None when it logged none."""
    from mlflow.exceptions import MlflowException

    from modelops.registry.errors import is_not_found, translate_errors

    with tempfile.TemporaryDirectory(prefix="modelops-drift-") as tmp, translate_errors("downloading the reference"):
        try:
            path = client.download_artifacts(run_id, ARTIFACT_REFERENCE, tmp)
        except MlflowException as exc:
            if is_not_found(exc):
                return None
            raise
        except FileNotFoundError:
            return None
        return read_parquet_sampled(path, columns=columns, max_rows=max_rows)


def previous_accuracy(client: Any, experiment_id: str, uid: str, limit: int, exclude_run: str) -> list[float]:
    """Accuracy of this monitor's previous finished runs, oldest first (at most ``limit`` runs looked at)."""
    if limit <= 0:
        return []
    from modelops.registry.errors import translate_errors

    uid_literal = uid.replace("'", "")
    with translate_errors("reading previous monitoring runs"):
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_UID}` = '{uid_literal}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=limit + 1,
        )
    values = [r.data.metrics.get(METRIC_ACCURACY) for r in runs if r.info.run_id != exclude_run][:limit]
    return [float(v) for v in reversed(values) if v is not None]


# -- the run --------------------------------------------------------------------------------------


def metric_key(column: str, taken: set[str]) -> str:
    """``drift_score.<column>`` made valid for MLflow: characters outside ``[A-Za-z0-9_.- ]`` become
    ``_``; an over-long or colliding key gets a short hash of the column name."""
    safe = re.sub(r"[^A-Za-z0-9_.\- ]", "_", column).strip() or "_"
    safe = re.sub(r"\.{2,}", "_", safe)
    key = METRIC_DRIFT_SCORE_PREFIX + safe
    if len(key) > MLFLOW_MAX_KEY or key in taken:
        digest = hashlib.sha1(column.encode()).hexdigest()[:8]
        key = key[: MLFLOW_MAX_KEY - 9] + "_" + digest
    taken.add(key)
    return key


def monitor(config: DriftJobConfig, client: Any, run_id: str, experiment_id: str, now: datetime) -> Outcome:
    """Compute one monitoring run's results (no MLflow writes besides reads).

    Raises :class:`InvalidInput` for unreadable ``reference_uri``/``current_uri`` or a missing
    current data source; lets MLflow/storage errors through.
    """
    from modelops.monitoring.prediction_log import read_feedback

    if config.window_start is not None and config.window_end is not None:
        since, now = config.window_start, config.window_end
    else:
        since = now - parse_duration(config.window)
    log_uri = config.prediction_log_uri or os.environ.get(ENV_PREDICTION_LOG_URI) or None
    if config.current_uri is None and log_uri is None:
        raise InvalidInput("no current data: set current.uri or the operator's prediction log URI")

    served = resolve_served_version(client, config.model, config.stage, config.registry_version)
    history = previous_accuracy(client, experiment_id, config.owner.uid, config.history_runs, run_id)

    window_rows = pd.DataFrame()
    features_log = pd.DataFrame()
    feedback: pd.DataFrame | None = None
    excluded_rows = 0
    if log_uri is not None:
        started = time.perf_counter()
        window_rows, features_log, excluded_rows = read_window(log_uri, config, since, now, served)
        log.info("read %d prediction log rows in %.2f s", len(window_rows), time.perf_counter() - started)
        feedback = read_feedback(log_uri, config.model, config.stage, since, now)
    health = compute_health(
        window_rows, config.health, feedback=feedback, previous_accuracy=history, task=served.task if served else None
    )
    if log_uri is None:
        health.issues.append("no prediction log configured: health is unknown")
    window_count = len(window_rows)
    del window_rows, feedback  # health is computed; drift needs only the (sampled) features

    summary: dict[str, Any] = {
        "model": config.model,
        "stage": config.stage,
        "model_version": served.semver if served else None,
        "registry_version": served.registry_version if served else None,
        "window": config.window if config.window_start is None else "fixed",
        "partition": config.log_partition or config.stage,
        "window_start": since.isoformat(),
        "window_end": now.isoformat(),
        "rows_of_other_versions": excluded_rows,
    }
    if served is None and config.registry_version is not None:
        message = f"version {config.registry_version} of {config.model} is not in the registry"
        return _insufficient(message, health, served, summary)
    if served is None:
        message = f"no version of {config.model} serves {config.stage} (alias {STAGE_ALIASES[config.stage]!r} unset)"
        return _insufficient(message, health, served, summary)

    spec = config.drift
    features = spec.columns or served.features
    # Files are read by column (the features; all columns when they are unknown) and, above
    # max_rows rows, only the rows detect_drift would sample (seed DRIFT_RANDOM_STATE).
    started = time.perf_counter()
    reference: SampledFrame | None
    if config.reference_uri:
        reference = read_table(
            config.reference_uri, config.reference_format, config.data_policy, columns=features, max_rows=spec.max_rows
        )
        reference_source = config.reference_uri
    elif served.run_id:
        reference = download_reference(client, served.run_id, columns=features, max_rows=spec.max_rows)
        reference_source = f"runs:/{served.run_id}/{ARTIFACT_REFERENCE}"
    else:
        reference, reference_source = None, "none"
    if reference is None:
        message = f"the training run of {config.model} version {served.registry_version} logged no reference sample"
        return _insufficient(message, health, served, summary)

    if config.current_uri:
        current = read_table(
            config.current_uri, config.current_format, config.data_policy, columns=features, max_rows=spec.max_rows
        )
        current_source = config.current_uri
    else:
        frame = strip_feature_prefix(features_log)
        current = SampledFrame(frame, window_count, [str(c) for c in frame.columns], [])
        span = config.window if config.window_start is None else f"{since.isoformat()} to {now.isoformat()}"
        current_source = f"prediction log {log_uri}, {config.log_partition or config.stage} ({span})"
    log.info(
        "read %d of %d reference rows and %d of %d current rows in %.2f s",
        len(reference.frame),
        reference.total_rows,
        len(current.frame),
        current.total_rows,
        time.perf_counter() - started,
    )

    notes: list[str] = []
    if features is None:
        features = [c for c in reference.file_columns if c in set(current.file_columns)]
        notes.append(
            "the training run recorded no model.features: compared the reference columns found in current data"
        )
    started = time.perf_counter()
    import evidently.legacy.report  # noqa: F401  (timed apart: the import alone takes seconds)

    log.info("Evidently imported in %.2f s", time.perf_counter() - started)
    started = time.perf_counter()
    drift = detect_drift(
        reference.frame,
        current.frame,
        columns=features,
        method=spec.method,
        threshold=spec.threshold,
        drift_share=spec.drift_share,
        min_rows=spec.min_rows,
        max_rows=spec.max_rows,
        max_missing_share=spec.max_missing_share,
        random_state=DRIFT_RANDOM_STATE,
        reference_total_rows=reference.total_rows,
        current_total_rows=current.total_rows,
        current_columns=current.file_columns,
    )
    del reference, current  # the result keeps the (sampled) frames it compared, for the report
    drift.notes[:0] = notes
    log.info(
        "drift of %d x %d columns computed in %.2f s (reference %d rows)",
        drift.current_rows_used,
        len(drift.columns),
        time.perf_counter() - started,
        drift.reference_rows_used,
    )
    summary.update(
        reference={"source": reference_source, "rows": drift.reference_rows},
        current={"source": current_source, "rows": drift.current_rows},
        features=list(features),
    )
    metrics: dict[str, float] = {METRIC_CURRENT_ROWS: float(drift.current_rows)}
    keys: dict[str, str] = {}
    if drift.result == "Completed":
        taken: set[str] = set()
        for col in drift.columns:
            if col.compared and col.score is not None:
                keys[col.name] = metric_key(col.name, taken)
                metrics[keys[col.name]] = col.score
        if drift.share is not None:
            metrics[METRIC_DRIFT_SHARE] = drift.share
        metrics[METRIC_DRIFTED_COLUMNS] = float(len(drift.drifted_columns))
    summary["metric_keys"] = keys
    page, summary["report"] = render_report(drift, spec.report, spec.report_rows)
    message = drift.message or drift.result
    return Outcome(drift.result, drift, health, served, message, metrics, summary, page)


def read_window(
    log_uri: str, config: DriftJobConfig, since: datetime, now: datetime, served: ServedVersion | None
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The prediction log's window for the served registry version, split for health and drift.

    Returns ``(rows, features, excluded)``: ``rows`` has the columns health reads
    (:data:`HEALTH_COLUMNS`), one row per prediction of the served version (all of them);
    ``features`` has the ``feature.<name>`` columns of the rows ``detect_drift`` keeps of them
    (``sample_positions(len(rows), config.drift.max_rows, DRIFT_RANDOM_STATE)``: all rows up to
    ``max_rows``), strings as categoricals; ``excluded`` counts the window's rows of other registry
    versions (only filtered when the log records versions). Filtering, the split and the sample
    happen in Arrow, so only those columns and rows become pandas objects.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from modelops.monitoring.prediction_log import read_prediction_log_table

    wanted = {*HEALTH_COLUMNS, "registry_version"}
    table = read_prediction_log_table(
        log_uri,
        config.model,
        config.log_partition or config.stage,
        since,
        now,
        columns=lambda name: name in wanted or name.startswith(LOG_FEATURE_PREFIX),
    )
    if table is None:
        return pd.DataFrame(columns=list(HEALTH_COLUMNS)), pd.DataFrame(), 0
    excluded = 0
    if served is not None and "registry_version" in table.column_names:
        versions = table["registry_version"]
        if versions.null_count < len(versions):
            mine = pc.fill_null(pc.equal(versions.cast(pa.string()), served.registry_version), False)
            excluded = len(versions) - int(pc.sum(mine).as_py() or 0)
            if excluded:  # a copy of the table only when other versions' rows are in the window
                table = table.filter(mine)
    rows = table.select([c for c in HEALTH_COLUMNS if c in table.column_names])
    names = [c for c in table.column_names if c.startswith(LOG_FEATURE_PREFIX)]
    features = table.select(names)
    positions = sample_positions(table.num_rows, config.drift.max_rows, DRIFT_RANDOM_STATE)
    if positions is not None:
        features = features.take(pa.array(positions))
    del table
    out = rows.to_pandas(self_destruct=True, split_blocks=True), compact_pandas(features), excluded
    pa.default_memory_pool().release_unused()  # hand the freed Arrow buffers back to the OS
    return out


def render_report(drift: DriftResult, mode: str, max_rows: int) -> tuple[str | None, dict[str, Any]]:
    """The ``drift/report.html`` page of a run and what ``summary.json`` says about it.

    ``mode`` is ``DriftSpec.report``: ``Always`` renders Evidently's report for every run with
    compared columns, ``OnDrift`` only when a column drifted, ``Never`` never; a run with compared
    columns whose report is not rendered gets the short summary page
    (:meth:`~modelops.monitoring.drift.DriftResult.summary_html`) saying why, so the report link in
    the monitor's status always opens a page. ``max_rows``: rows per frame the plots are drawn from.
    Returns ``(page or None, {"mode", "rendered", "reason"?, "plot_rows"?})``; no page when nothing
    was compared (``InsufficientData``).
    """
    info: dict[str, Any] = {"mode": mode, "rendered": False}
    if drift.result != "Completed":
        info["reason"] = "no column was compared"
        return None, info
    if mode == "Never" or (mode == "OnDrift" and not drift.drifted_columns):
        why = "drift.report is Never" if mode == "Never" else "drift.report is OnDrift and no column drifted"
        info["reason"] = why
        note = f"Evidently's report was not rendered for this run: {why} (set drift.report: Always to render it)."
        return drift.summary_html(note), info
    started = time.perf_counter()
    page = drift.report_html(max_rows=max_rows)
    log.info("Evidently HTML report rendered in %.2f s", time.perf_counter() - started)
    info.update(
        rendered=True, plot_rows=[min(drift.reference_rows_used, max_rows), min(drift.current_rows_used, max_rows)]
    )
    return page, info


def _insufficient(message: str, health: HealthReport, served: ServedVersion | None, summary: dict) -> Outcome:
    """An ``InsufficientData`` outcome without drift (health is still reported)."""
    return Outcome("InsufficientData", None, health, served, message, {}, summary)


def health_metrics(health: HealthReport) -> dict[str, float]:
    """The health numbers as run metrics (missing ones left out)."""
    values = {
        METRIC_PREDICTIONS: float(health.predictions),
        METRIC_LATENCY_P50: health.latency_p50_ms,
        METRIC_LATENCY_P95: health.latency_p95_ms,
        METRIC_ERROR_RATE: health.error_rate,
        METRIC_ACCURACY: health.accuracy,
    }
    return {k: float(v) for k, v in values.items() if v is not None}


def write_outcome(client: Any, run_id: str, config: DriftJobConfig, outcome: Outcome) -> None:
    """Log the outcome's metrics, artifacts and tags to ``run_id`` and end it FINISHED."""
    from mlflow.entities import Metric, RunTag

    from modelops.registry.errors import translate_errors

    stamp = int(time.time() * 1000)
    metrics = {**outcome.metrics, **health_metrics(outcome.health)}
    drift_doc: dict[str, Any] = (
        outcome.drift.model_dump(mode="json")
        if outcome.drift is not None
        else {"result": outcome.result, "message": outcome.message, "detected": False}
    )
    health_doc = outcome.health.model_dump(mode="json")
    summary = {**outcome.summary, "result": outcome.result, "drift": drift_doc, "health": health_doc}
    tags = {TAG_RESULT: outcome.result}
    if outcome.served is not None and outcome.served.semver:
        tags[TAG_SEMVER] = outcome.served.semver
    with translate_errors("writing the monitoring run"):
        items = [Metric(k, v, stamp, 0) for k, v in metrics.items()]
        for start in range(0, len(items), MLFLOW_BATCH_METRICS):
            client.log_batch(run_id, metrics=items[start : start + MLFLOW_BATCH_METRICS])
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        client.log_text(run_id, json.dumps(summary, indent=2, default=str), ARTIFACT_DRIFT_SUMMARY)
        if outcome.report_html is not None:
            client.log_text(run_id, outcome.report_html, ARTIFACT_DRIFT_REPORT)
        client.set_terminated(run_id, "FINISHED")


def record_failure(client: Any, run_id: str, reason: str, status: str = "FAILED") -> None:
    """Tag ``run_id`` Failed with ``reason`` and end it; MLflow errors here are logged, not raised."""
    from mlflow.entities import RunTag
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    try:
        client.log_batch(run_id, tags=[RunTag(TAG_RESULT, "Failed"), RunTag(TAG_FAILURE, reason[:5000])])
        client.set_terminated(run_id, status)
    except (MlflowException, RequestException) as exc:
        log.warning("could not record the failure in MLflow run %s: %s", run_id, one_line(exc))


def run_job(config: DriftJobConfig, now: datetime | None = None) -> tuple[int, str]:
    """Run one monitoring run; returns ``(exit code, one-line message)`` and never raises for job failures."""
    import mlflow
    from mlflow import MlflowClient

    from modelops.registry.errors import RegistryUnavailable, is_unavailable, translate_errors

    now = now or datetime.now(UTC)
    tracking = mlflow.get_tracking_uri()
    client = MlflowClient()
    tags = {**config.owner.tags(), TAG_MODEL_NAME: config.model, TAG_MODEL_STAGE: config.stage, **config.run_tags}
    try:
        with translate_errors("creating the monitoring run"):
            experiment = client.get_experiment_by_name(config.experiment)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(config.experiment)
            run = client.create_run(
                experiment_id, tags=tags, run_name=f"{config.owner.name}-{now.strftime('%Y%m%dT%H%M%SZ')}"
            )
    except RegistryUnavailable as exc:
        return EXIT_FAILED, f"MLflow unreachable at {tracking}: {one_line(exc.__cause__ or exc, 300)}"

    run_id = run.info.run_id
    try:
        outcome = monitor(config, client, run_id, experiment_id, now)
        started = time.perf_counter()
        write_outcome(client, run_id, config, outcome)
        log.info("monitoring run %s written in %.2f s", run_id, time.perf_counter() - started)
    except InvalidInput as exc:
        reason = one_line(exc)
        record_failure(client, run_id, reason)
        return EXIT_INVALID_INPUT, reason
    except Terminated as exc:
        reason = one_line(exc)
        record_failure(client, run_id, reason, status="KILLED")
        return EXIT_FAILED, reason
    except RegistryUnavailable as exc:
        reason = f"MLflow unreachable at {tracking}: {one_line(exc.__cause__ or exc, 300)}"
        record_failure(client, run_id, reason)
        return EXIT_FAILED, reason
    except Exception as exc:  # process boundary: any other fault must end the run FAILED with its reason
        log.exception("monitoring run failed")
        reason = f"{type(exc).__name__}: {one_line(exc)}"
        if is_unavailable(exc):
            reason = f"MLflow unreachable at {tracking}: {one_line(exc, 300)}"
        record_failure(client, run_id, reason)
        return EXIT_FAILED, reason
    verdict = f"health {outcome.health.status}"
    if outcome.drift is not None and outcome.drift.result == "Completed":
        drifted = ", ".join(outcome.drift.drifted_columns) or "none"
        verdict = f"drift {'detected' if outcome.drift.detected else 'not detected'} (drifted: {drifted}); " + verdict
    return EXIT_OK, f"{outcome.result} in run {run_id}: {outcome.message}; {verdict}"


def main(args: list[str]) -> int:
    """Entry point of ``modelops-runtime drift [--config-file PATH]``; returns the exit code."""
    return run_main("drift", (__doc__ or "").splitlines()[0], args, load_config, run_job, "drift")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
