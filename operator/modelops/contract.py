"""The contract between the operator and the runtime image (train, serve, drift). One place only.

The operator builds a job config, serialises it as JSON into the ``MODELOPS_JOB_CONFIG``
environment variable of the pod, and the runtime parses it back with the same pydantic class.
Runtime results travel back through MLflow only (runs, metrics, tags, artifacts), under the
tag and artifact names defined here. This module imports neither kopf nor Evidently.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .api.modelmonitor import DriftSpec, HealthSpec
from .api.modelversion import BatchingSpec, DataSpec
from .datapolicy import DataUriPolicy

#: Env var holding the job config JSON (TrainJobConfig / ServeConfig / DriftJobConfig).
ENV_JOB_CONFIG = "MODELOPS_JOB_CONFIG"
#: Standard MLflow client env vars (read by mlflow itself).
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_TRACKING_SECRETS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
#: Where the model server appends its prediction log (fsspec URI of a directory).
ENV_PREDICTION_LOG_URI = "PREDICTION_LOG_URI"
#: Pod name (downward API), used to partition the prediction log.
ENV_POD_NAME = "POD_NAME"
#: Listening port override for the model server (the sandbox kubelet sets it per replica).
ENV_PORT = "MODELOPS_PORT"
#: Prefix of the model server's request limits (``MODELOPS_SERVE_MAX_ROWS`` …; serve/limits.py).
ENV_SERVE_LIMIT_PREFIX = "MODELOPS_SERVE_"
#: Address the model server binds when set (default 0.0.0.0): the sandbox's node gives each pod its
#: own loopback address and sets it, as a pod network namespace would give the pod its own IP.
ENV_HOST = "MODELOPS_HOST"
#: Env var holding the model server's router setting (:class:`RouterConfig` JSON; unset = no router).
ENV_ROUTER = "MODELOPS_ROUTER"
#: Header on requests the router copies to a shadow candidate (the candidate's answer is not returned).
HEADER_ROUTED = "x-modelops-route"
#: Container port name of the model server (HTTP API and /metrics).
SERVING_PORT_NAME = "http-metrics"
SERVING_PORT = 8080

#: Runtime console script and its sub-commands.
RUNTIME_ENTRYPOINT = "modelops-runtime"
CMD_TRAIN, CMD_SERVE, CMD_DRIFT = "train", "serve", "drift"

#: Default MLflow experiments (from the original system document).
EXPERIMENT_TRAINING = "model-training"
EXPERIMENT_EVALUATION = "model-evaluation"
EXPERIMENT_MONITORING = "production-monitoring"

# MLflow tag names. Runs, registered models and model versions all use these keys.
TAG_KIND = "modelops.kind"  # ModelVersion | ModelMonitor
TAG_NAMESPACE = "modelops.namespace"  # owning CR namespace; on a registered model: the owning namespace
TAG_NAME = "modelops.name"  # owning CR name
TAG_UID = "modelops.uid"  # owning CR uid: how the operator finds a job's run
TAG_SEMVER = "semver"  # semantic version (runs and model versions)
TAG_PARENT = "semver.parent"  # lineage: parent semantic version
TAG_STAGE = "stage"  # Development|Staging|Production|Archived (model versions)
# What the operator itself last wrote, so that its own writes are never reported as changes by hand:
TAG_STAGE_WRITTEN = "modelops.stage_written"  # model versions: the stage tag value the operator last set
TAG_ALIASES_WRITTEN = "modelops.aliases_written"  # registered models: JSON {stage alias: version or null}
TAG_DATASET_URI = "dataset.uri"
TAG_DATASET_HASH = "dataset.sha256"
TAG_FAILURE = "modelops.failure_reason"  # one-line reason when a runtime job failed
TAG_MODEL_STAGE = "modelops.stage"  # monitoring runs: monitored stage
TAG_MODEL_NAME = "modelops.model"  # monitoring runs: registered model name
TAG_RESULT = "modelops.result"  # monitoring runs: Completed|InsufficientData|Failed
TAG_ROLLOUT_WINDOW = "modelops.rollout.window"  # rollout drift runs: the analysis window's id
TAG_ROLLOUT_SIDE = "modelops.rollout.side"  # rollout drift runs: candidate|incumbent

# Training run tags carrying model metadata (see TrainingResult).
TAG_META_PREFIX = "model."

# Artifact paths inside a run.
ARTIFACT_MODEL = "model"
ARTIFACT_REFERENCE = "reference/reference.parquet"
ARTIFACT_PROFILE = "data_profile.json"
ARTIFACT_DRIFT_REPORT = "drift/report.html"
ARTIFACT_DRIFT_SUMMARY = "drift/summary.json"

# Monitoring run metric names (per-column scores are "drift_score.<column>").
METRIC_DRIFT_SHARE = "drift_share"
METRIC_DRIFTED_COLUMNS = "drifted_columns"
METRIC_DRIFT_SCORE_PREFIX = "drift_score."
METRIC_PREDICTIONS = "predictions"
METRIC_LATENCY_P50 = "latency_p50_ms"
METRIC_LATENCY_P95 = "latency_p95_ms"
METRIC_ERROR_RATE = "error_rate"
METRIC_ACCURACY = "accuracy"
METRIC_CURRENT_ROWS = "current_rows"

# Prometheus metric names (from the original system document; served by the model server and operator).
PROM_PREDICTIONS = "ml_predictions_total"
PROM_LATENCY = "ml_prediction_latency_seconds"
PROM_ERRORS = "ml_prediction_errors_total"
PROM_ACCURACY = "ml_model_accuracy"
PROM_DRIFT = "ml_drift_detections_total"
#: ``error_type`` values of :data:`PROM_ERRORS` that are the server's fault (5xx); the others are the client's.
PROM_SERVER_ERROR_TYPES = ("internal", "not_ready")
# The rollout router's metrics (serve/router.py), read by the operator's rollout analysis (rollout/window.py).
PROM_ROUTER_REQUESTS = "modelops_router_requests_total"
PROM_ROUTER_LATENCY = "modelops_router_candidate_latency_seconds"
PROM_ROUTER_SHADOW_ROWS = "modelops_router_shadow_rows_total"

# Prediction log layout: <base>/<model>/<stage>/date=YYYY-MM-DD/<pod>-<seq>.parquet with these columns.
LOG_COLUMNS = (
    "request_id",
    "timestamp",
    "model_version",
    "registry_version",
    "latency_ms",
    "status",
    "prediction",
    "probability",
)
LOG_FEATURE_PREFIX = "feature."
#: ``status`` of a successful request in the prediction log; any other value counts as a failed request.
LOG_STATUS_OK = "ok"
FEEDBACK_DIR = (
    "feedback"  # <base>/<model>/<stage>/feedback/date=YYYY-MM-DD/<pod>-<seq>.parquet: request_id, label, timestamp
)

#: Exit code of a runtime command whose input was invalid (vs 1 for other failures); also of a
#: replacement server worker that refuses the model its sibling workers serve.
EXIT_INVALID_INPUT = 2

#: Where Kubernetes reads a container's termination message (the default terminationMessagePath),
#: and the env var that moves it (the sandbox's kubelet cannot mount a file there).
TERMINATION_LOG = "/dev/termination-log"
ENV_TERMINATION_LOG = "MODELOPS_TERMINATION_LOG"

#: Why a model server refuses its model (``IncompatibleModel`` covers the other kinds). The server
#: stays up, not ready: ``/v2/health/ready`` answers 503 with ``<reason>: <message>`` under
#: :data:`READY_REFUSAL_KEY`, and the same line is its termination message (shown once the container
#: stops). The operator reads either into the ModelVersion's ``Serving`` condition.
REFUSAL_FRAMEWORK_VERSION = "FrameworkVersionMismatch"
REFUSAL_UNTRUSTED = "UntrustedModel"
REFUSAL_INCOMPATIBLE = "IncompatibleModel"
REFUSAL_REASONS = (REFUSAL_FRAMEWORK_VERSION, REFUSAL_UNTRUSTED, REFUSAL_INCOMPATIBLE)


def refusal_message(reason: str, message: str) -> str:
    """The termination message of a server that refused its model (one line)."""
    return f"{reason}: {' '.join(message.split())}"


#: The readiness path of the model server (also its pods' readinessProbe).
READY_PATH = "/v2/health/ready"
#: Key of the not-ready body of :data:`READY_PATH` that carries a refusal (:func:`refusal_message`).
READY_REFUSAL_KEY = "refusal"


def not_ready_body(error: str, refusal: tuple[str, str] | None = None) -> dict[str, Any]:
    """The JSON body of a 503 from :data:`READY_PATH`: ``{"ready": false, "error": ...}``, and when the
    server refused its model, ``reason`` and ``refusal`` (``refusal_message(reason, message)``)."""
    body: dict[str, Any] = {"ready": False, "error": error}
    if refusal is not None:
        body["reason"] = refusal[0]
        body[READY_REFUSAL_KEY] = refusal_message(*refusal)
    return body


def parse_ready_refusal(body: str | bytes | None) -> tuple[str, str] | None:
    """``(reason, message)`` of a :data:`READY_PATH` body written by :func:`not_ready_body` with a
    refusal, else None (a loading server, a ready one, not JSON)."""
    try:
        data = json.loads(body or b"")
    except ValueError:
        return None
    value = data.get(READY_REFUSAL_KEY) if isinstance(data, dict) else None
    return parse_refusal(value) if isinstance(value, str) else None


def parse_refusal(text: str | None) -> tuple[str, str] | None:
    """``(reason, message)`` of a termination message written by :func:`refusal_message`, else None
    (another container's message, or a log tail when the process crashed)."""
    reason, sep, message = (text or "").strip().partition(": ")
    if not sep or reason not in REFUSAL_REASONS:
        return None
    return reason, message.strip()


def prediction_log_dir(base: str, model: str, stage: str) -> str:
    """Directory of a model stage's prediction log under ``base`` (an fsspec URI)."""
    return f"{base.rstrip('/')}/{model}/{stage.lower()}"


def prediction_log_partition(base: str, model: str, stage: str, day: date, feedback: bool = False) -> str:
    """Date partition directory for predictions (or feedback) of one day."""
    sub = f"{FEEDBACK_DIR}/" if feedback else ""
    return f"{prediction_log_dir(base, model, stage)}/{sub}date={day.isoformat()}"


def estimator_allowed(path: str, prefixes: list[str] | tuple[str, ...]) -> bool:
    """Whether the dotted estimator ``path`` lies under one of the module ``prefixes``
    (``sklearn.`` and ``sklearn`` both mean the package). The operator refuses a spec outside them
    (InvalidSpec) and the training job refuses it again before importing anything."""
    for prefix in prefixes:
        if path.startswith(prefix if prefix.endswith(".") else prefix + "."):
            return True
    return False


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_env(self) -> str:
        """Serialise for the ``MODELOPS_JOB_CONFIG`` env var."""
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_env(cls, value: str) -> Any:
        """Parse a config from the env var's JSON; raises pydantic.ValidationError when invalid."""
        return cls.model_validate_json(value)


class Owner(BaseModel):
    """The custom resource a runtime job works for (written as MLflow tags)."""

    kind: Literal["ModelVersion", "ModelMonitor"]
    namespace: str
    name: str
    uid: str

    def tags(self) -> dict[str, str]:
        """MLflow tags that identify the owner."""
        return {TAG_KIND: self.kind, TAG_NAMESPACE: self.namespace, TAG_NAME: self.name, TAG_UID: self.uid}


class TrainJobConfig(_Config):
    """Config of ``modelops-runtime train`` (one training Job)."""

    owner: Owner
    model: str = Field(description="Registered model name (the run is not registered by the job).")
    version: str = Field(description="Resolved semantic version, logged as the semver tag.")
    parent_version: str | None = None
    data: DataSpec
    estimator: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    test_size: float = 0.2
    random_state: int = 42
    experiment: str = EXPERIMENT_TRAINING
    allowed_estimator_modules: list[str] = Field(default_factory=lambda: ["sklearn."])
    data_policy: DataUriPolicy = Field(
        default_factory=DataUriPolicy,
        description="The operator's data URI policy, enforced again when the pod fetches (DNS, redirects, links).",
    )
    reference_sample_rows: int = Field(
        default=5000, ge=10, description="Rows of training data kept as drift reference."
    )


class ServeConfig(_Config):
    """Config of ``modelops-runtime serve`` (one serving pod)."""

    model: str = Field(description="Registered model name.")
    registry_version: str = Field(description="MLflow registry version to load (models:/<model>/<n>).")
    version: str = Field(description="Semantic version (label values, metrics).")
    stage: str = Field(description="Stage served (prediction log partition).")
    port: int = 8080
    prediction_log_uri: str | None = Field(default=None, description="fsspec directory; None disables the log.")
    log_flush_seconds: float = Field(default=5.0, gt=0)
    # One Parquet file per 10,000 rows: at 1,000 rows a 100-row request cost the writer 0.34 to
    # 0.38 ms of CPU (file open, writer set-up, rename), at 10,000 rows 0.11 ms (measured,
    # 30 float features), and the drift job reads 10x fewer files.
    log_flush_rows: int = Field(default=10_000, ge=1)
    framework_version_match: Literal["exact", "minor"] = Field(
        default="exact",
        description="exact: refuse a model saved with another scikit-learn version; minor: compare major.minor only.",
    )
    workers: int = Field(default=1, ge=1, le=32, description="Server processes sharing the port (serve/workers.py).")
    batching: BatchingSpec | None = Field(default=None, description="Adaptive batching (serve/batching.py); None: off.")

    @property
    def model_uri(self) -> str:
        """The pinned MLflow model URI."""
        return f"models:/{self.model}/{self.registry_version}"


class RouterConfig(_Config):
    """The router setting of an incumbent's serving pods during a rollout (``MODELOPS_ROUTER``).

    ``shadow``: every ``1/sample_rate``-th request is also sent to ``url`` off the request path;
    ``canary``: ``weight`` percent of requests are answered by ``url`` (exactly: request *n* goes to
    the candidate when ``floor(n*w/100) > floor((n-1)*w/100)``). Candidate answers are logged to the
    candidate's partition of the prediction log (:func:`candidate_log_stage`).
    """

    mode: Literal["shadow", "canary"]
    url: str = Field(description="Base URL of the candidate's Service.", min_length=1)
    version: str = Field(description="The candidate's semantic version (its prediction-log rows).")
    registry_version: str = Field(description="The candidate's MLflow registry version.")
    sample_rate: float = Field(default=1.0, gt=0, le=1, description="shadow: share of requests copied.")
    weight: int = Field(default=0, ge=0, le=100, description="canary: percent of requests the candidate answers.")
    timeout_seconds: float = Field(default=5.0, gt=0, description="Time a candidate has to answer, s.")
    queue_size: int = Field(default=256, ge=1, description="shadow: copies waiting to be sent; more are dropped.")
    concurrency: int = Field(default=4, ge=1, le=64, description="shadow: copies in flight at once.")


def candidate_log_stage(stage: str) -> str:
    """The prediction-log partition (in place of the stage) of a rollout candidate's answers."""
    return f"{stage}-candidate"


class DriftJobConfig(_Config):
    """Config of ``modelops-runtime drift`` (one monitoring run of a CronJob)."""

    owner: Owner
    model: str
    stage: str = Field(description="Monitored stage; its alias resolves the served version at run time.")
    experiment: str = EXPERIMENT_MONITORING
    reference_uri: str | None = None
    reference_format: str = "auto"
    current_uri: str | None = None
    current_format: str = "auto"
    window: str = "24h"
    prediction_log_uri: str | None = None
    data_policy: DataUriPolicy = Field(
        default_factory=DataUriPolicy, description="The operator's data URI policy for reference_uri and current_uri."
    )
    drift: DriftSpec = Field(default_factory=DriftSpec)
    health: HealthSpec = Field(default_factory=HealthSpec)
    history_runs: int = Field(default=5, ge=0, description="Previous runs used for the accuracy trend.")
    # A rollout's drift check (docs/rollout.md) pins what a monitor resolves at run time:
    registry_version: str | None = Field(
        default=None, description="Check this registry version instead of the one the stage's alias points to."
    )
    log_partition: str | None = Field(
        default=None,
        description="Prediction-log partition read instead of the stage's (a candidate's: candidate_log_stage).",
    )
    window_start: datetime | None = Field(
        default=None, description="With window_end: the window [window_start, window_end) instead of `window`."
    )
    window_end: datetime | None = None
    run_tags: dict[str, str] = Field(default_factory=dict, description="Extra tags on the monitoring run.")

    @model_validator(mode="after")
    def _absolute_window(self) -> DriftJobConfig:
        if (self.window_start is None) != (self.window_end is None):
            raise ValueError("window_start and window_end go together")
        if self.window_start is not None and self.window_end is not None and self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self


class TrainingResult(BaseModel):
    """Model metadata the training run records as ``model.*`` tags, read back by the operator."""

    framework_version: str | None = None
    algorithm: str | None = None
    task: Literal["classification", "regression"] | None = None
    size_bytes: int | None = None
    training_rows: int | None = None
    features: list[str] | None = None
    classes: list[str] | None = None

    def to_tags(self) -> dict[str, str]:
        """Encode as MLflow tags (lists as JSON)."""
        out = {}
        for key, value in self.model_dump(exclude_none=True).items():
            out[TAG_META_PREFIX + key] = json.dumps(value) if isinstance(value, list) else str(value)
        return out

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> TrainingResult:
        """Decode from a run's tags; unknown or missing keys are ignored."""
        values: dict[str, Any] = {}
        for key, field in cls.model_fields.items():
            raw = tags.get(TAG_META_PREFIX + key)
            if raw is None:
                continue
            values[key] = json.loads(raw) if field.annotation is not None and "list" in str(field.annotation) else raw
        return cls.model_validate(values)
