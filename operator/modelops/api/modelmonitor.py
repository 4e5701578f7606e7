"""``ModelMonitor`` spec and status: scheduled drift detection and health checks for a model's stage."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from .common import DNS_LABEL, ApiModel, ColumnName, Condition, Resources
from .modelversion import VersionBump

#: Statistical tests Evidently knows by name (evidently.legacy stattests registry); None = chosen per column.
DriftMethod = Literal[
    "ks",
    "chisquare",
    "z",
    "jensenshannon",
    "wasserstein",
    "psi",
    "kl_div",
    "anderson",
    "cramer_von_mises",
    "hellinger",
    "mannw",
    "ed",
    "es",
    "t_test",
    "empirical_mmd",
    "fisher_exact",
    "g_test",
    "TVD",
]
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|hourly)|(\S+\s+){4}\S+)$"
DURATION_PATTERN = r"^([0-9]+(s|m|h|d))+$"


class ReferenceSpec(ApiModel):
    """Reference data: what the model learned from."""

    uri: str | None = Field(
        default=None,
        max_length=2048,
        description=(
            "Dataset URI (allowed by the operator's data URI policy, else InvalidSpec); default is the reference "
            "sample logged by the serving version's training run."
        ),
    )
    format: Literal["auto", "csv", "parquet"] = Field(default="auto", description="File format.")


class CurrentSpec(ApiModel):
    """Current data: what the model sees now."""

    uri: str | None = Field(
        default=None,
        max_length=2048,
        description="Dataset URI (allowed by the operator's data URI policy, else InvalidSpec); default is the "
        "stage's prediction log.",
    )
    format: Literal["auto", "csv", "parquet"] = Field(default="auto", description="File format.")
    window: str = Field(
        default="24h", pattern=DURATION_PATTERN, max_length=32, description="Prediction-log window, e.g. 30m, 24h, 7d."
    )


class DriftSpec(ApiModel):
    """How drift is decided (Evidently's data drift preset semantics)."""

    method: DriftMethod | None = Field(
        default=None, description="Statistical test for every column; chosen by column type and size when unset."
    )
    threshold: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Per-column drift threshold (p-value or distance); test default when unset.",
    )
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="Dataset drift when at least this share of columns drifted."
    )
    columns: list[ColumnName] | None = Field(
        default=None, max_length=1000, description="Columns to compare; default all model input features."
    )
    min_rows: int = Field(default=50, ge=1, le=10_000_000, description="Fewer current rows gives InsufficientData.")
    max_missing_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description=(
            "A feature missing in more than this share of current rows (or absent from the current data) "
            "is not compared and fails the DataQuality condition; 1: only entirely missing features."
        ),
    )
    max_rows: int = Field(
        default=200_000, ge=100, le=100_000_000, description="Larger frames are sampled to this many rows."
    )
    report: Literal["Always", "OnDrift", "Never"] = Field(
        default="Always",
        description=(
            "When the Evidently HTML report is rendered: every run with compared columns, only runs where a "
            "column drifted, or never; other runs get a short page saying why."
        ),
    )
    report_rows: int = Field(
        default=20_000,
        ge=1000,
        le=10_000_000,
        description="Rows per frame the report's plots are drawn from; scores shown are the run's, from all rows.",
    )


class HealthSpec(ApiModel):
    """Health thresholds for the served model."""

    max_latency_p95_ms: float = Field(default=100.0, gt=0, description="Maximum p95 prediction latency, ms.")
    max_error_rate: float = Field(default=0.05, ge=0, le=1, description="Maximum share of failed requests.")
    min_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="Minimum accuracy on feedback labels, when feedback exists."
    )


class RetrainSpec(ApiModel):
    """What onDrift: Retrain creates."""

    version_bump: VersionBump = Field(default="minor", description="Version bump of the retraining ModelVersion.")
    stage: Literal["Development", "Staging", "Production"] = Field(
        default="Staging", description="Stage the retraining version requests."
    )
    max_per_day: int = Field(default=1, ge=0, le=24, description="Retraining versions created per UTC day at most.")


class ModelMonitorSpec(ApiModel):
    """Desired state of a ModelMonitor."""

    model: str = Field(description="Registered model name to monitor.", min_length=1, max_length=40, pattern=DNS_LABEL)
    stage: Literal["Development", "Staging", "Production"] = Field(
        default="Production", description="Stage whose serving version is monitored."
    )
    schedule: str = Field(
        default="0 * * * *", max_length=128, pattern=CRON_PATTERN, description="Cron schedule of the drift CronJob."
    )

    @field_validator("schedule")
    @classmethod
    def _schedule_in_range(cls, value: str) -> str:
        """Field values in range (``61 * * * *`` matches the CRD's coarse pattern but never fires).

        Checked with croniter (the operator's dependency) when it is installed; the CRD's pattern
        alone cannot express cron ranges.
        """
        try:
            from croniter import croniter
        except ImportError:  # pragma: no cover - tools without the operator extra
            return value
        if not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a valid cron schedule (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6)"
            )
        return value

    suspend: bool = Field(default=False, description="Suspends the CronJob.")
    reference: ReferenceSpec = Field(default_factory=ReferenceSpec, description="Reference data.")
    current: CurrentSpec = Field(default_factory=CurrentSpec, description="Current data.")
    drift: DriftSpec = Field(default_factory=DriftSpec, description="Drift settings.")
    health: HealthSpec = Field(default_factory=HealthSpec, description="Health thresholds.")
    on_drift: Literal["None", "Event", "Retrain"] = Field(
        default="Event", description="None: status only; Event: also an Event; Retrain: also a new ModelVersion."
    )
    retrain: RetrainSpec = Field(default_factory=RetrainSpec, description="Retraining settings.")
    image: str | None = Field(default=None, max_length=512, description="Runtime image override.")
    resources: Resources | None = Field(default=None, description="Drift container resources.")
    active_deadline_seconds: int = Field(default=1800, ge=1, le=86400, description="Drift Job wall-time limit, s.")


class ColumnDrift(ApiModel):
    """Drift result for one column."""

    name: str = Field(description="Column name.")
    stattest: str | None = Field(default=None, description="Statistical test used.")
    score: float | None = Field(default=None, description="Test statistic or p-value (see stattest).")
    threshold: float | None = Field(default=None, description="Threshold applied.")
    drifted: bool = Field(default=False, description="Whether the column drifted.")
    reason: str | None = Field(default=None, description="Why the column was skipped, when it was.")
    reference_missing_share: float | None = Field(
        default=None, ge=0, le=1, description="Share of reference rows without a usable value (missing, infinite)."
    )
    current_missing_share: float | None = Field(
        default=None, ge=0, le=1, description="Share of current rows without a usable value (1: absent or all missing)."
    )


class DriftStatus(ApiModel):
    """Latest drift result."""

    detected: bool = Field(default=False, description="Dataset drift detected.")
    share: float | None = Field(default=None, ge=0, le=1, description="Share of compared columns that drifted.")
    drifted_columns: list[str] = Field(default_factory=list, max_length=1000, description="Drifted column names.")
    columns: list[ColumnDrift] = Field(default_factory=list, max_length=1000, description="Per-column results.")
    ignored_columns: list[str] = Field(
        default_factory=list, max_length=1000, description="Columns unknown to the model."
    )
    missing_columns: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="Features absent from the current data or missing in more than drift.maxMissingShare of it.",
    )
    report_uri: str | None = Field(default=None, description="Evidently HTML report artifact URI.")


class HealthStatus(ApiModel):
    """Latest health check."""

    status: Literal["healthy", "degraded", "unhealthy", "unknown"] = Field(default="unknown", description="Verdict.")
    issues: list[str] = Field(default_factory=list, max_length=50, description="What is wrong.")
    predictions: int | None = Field(default=None, ge=0, description="Predictions in the window.")
    latency_p50_ms: float | None = Field(default=None, ge=0, description="Median latency, ms.")
    latency_p95_ms: float | None = Field(default=None, ge=0, description="p95 latency, ms.")
    error_rate: float | None = Field(default=None, ge=0, le=1, description="Failed share of requests.")
    accuracy: float | None = Field(default=None, ge=0, le=1, description="Accuracy on feedback labels.")
    trend: Literal["improving", "stable", "degrading", "unknown"] = Field(
        default="unknown", description="Accuracy trend against previous runs."
    )


class LastRun(ApiModel):
    """The newest monitoring run."""

    run_id: str = Field(description="MLflow run id in the production-monitoring experiment.")
    time: datetime = Field(description="Run end time.")
    result: Literal["Completed", "InsufficientData", "Failed"] = Field(description="Outcome.")
    model_version: str | None = Field(default=None, description="Semantic version monitored.")
    current_rows: int | None = Field(default=None, ge=0, description="Current rows compared.")
    message: str | None = Field(default=None, description="Detail, e.g. why data was insufficient.")


class MonitorRecord(ApiModel):
    """One entry of the bounded monitoring history."""

    run_id: str = Field(description="MLflow run id.")
    time: datetime = Field(description="Run end time.")
    result: str = Field(description="Outcome.")
    drift_detected: bool | None = Field(default=None, description="Drift detected.")
    drift_share: float | None = Field(default=None, description="Drift share.")
    health: str | None = Field(default=None, description="Health verdict.")
    accuracy: float | None = Field(default=None, description="Accuracy.")
    latency_p95_ms: float | None = Field(default=None, description="p95 latency, ms.")


class RetrainingStatus(ApiModel):
    """Retraining bookkeeping (onDrift: Retrain)."""

    day: str | None = Field(default=None, description="UTC day (YYYY-MM-DD) the count refers to.")
    count: int = Field(default=0, ge=0, description="Retraining versions created that day.")
    last_model_version: str | None = Field(default=None, description="Name of the last retraining ModelVersion.")
    last_run_id: str | None = Field(default=None, description="Monitoring run that triggered it.")


class ModelMonitorStatus(ApiModel):
    """Observed state of a ModelMonitor, written only by the operator."""

    observed_generation: int | None = Field(default=None, ge=0, description="metadata.generation last handled.")
    conditions: list[Condition] = Field(
        default_factory=list, max_length=32, description="Scheduled, DriftDetected, Healthy, Ready."
    )
    cron_job: str | None = Field(default=None, description="CronJob name.")
    model_version: str | None = Field(default=None, description="Semantic version currently serving the stage.")
    last_run: LastRun | None = Field(default=None, description="Newest monitoring run.")
    drift: DriftStatus | None = Field(default=None, description="Latest drift result.")
    health: HealthStatus | None = Field(default=None, description="Latest health check.")
    history: list[MonitorRecord] = Field(default_factory=list, max_length=50, description="Recent runs, newest last.")
    retraining: RetrainingStatus | None = Field(default=None, description="Retraining bookkeeping.")
