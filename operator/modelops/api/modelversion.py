"""``ModelVersion`` spec and status: one trained, registered and possibly served model version."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from .common import DNS_LABEL, SEMVER_PATTERN, ApiModel, ColumnName, Condition, Resources

Stage = Literal["Development", "Staging", "Production", "Archived"]
VersionBump = Literal["major", "minor", "patch"]
#: Stage → MLflow registered-model alias (MLflow stages are deprecated since 2.9).
STAGE_ALIASES: dict[str, str] = {"Development": "development", "Staging": "staging", "Production": "production"}


class DataSpec(ApiModel):
    """Where the tabular training data is and which column is the label."""

    uri: str = Field(
        description=(
            "Dataset location: a path on the data volume, http(s)://, s3:// (with the s3 extra), or a built-in "
            "real dataset: sklearn://breast_cancer|wine|iris|digits|diabetes, penguins://. Only what the "
            "operator's data URI policy allows (docs/install.md); anything else is Ready=False, InvalidSpec."
        ),
        min_length=1,
        max_length=2048,
    )
    format: Literal["auto", "csv", "parquet"] = Field(
        default="auto", description="File format; auto picks it from the extension."
    )
    target: str = Field(description="Label column name.", min_length=1, max_length=256)
    numeric_features: list[ColumnName] | None = Field(
        default=None,
        max_length=1000,
        description="Numeric feature columns; found from dtypes when both feature lists are unset.",
    )
    categorical_features: list[ColumnName] | None = Field(
        default=None,
        max_length=1000,
        description="Categorical feature columns; found from dtypes when both feature lists are unset.",
    )


class TrainingSpec(ApiModel):
    """How the training Job trains the model."""

    image: str | None = Field(
        default=None, max_length=512, description="Runtime image; defaults to the operator's runtime image."
    )
    data: DataSpec = Field(description="Training data.")
    estimator: str = Field(
        default="sklearn.ensemble.RandomForestClassifier",
        description="Dotted scikit-learn estimator class, restricted to the operator's module allowlist.",
        max_length=256,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$",
    )
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Estimator parameters, checked against the estimator's get_params() before training.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "maxProperties": 100},
    )
    test_size: float = Field(default=0.2, gt=0, lt=1, description="Held-out fraction for evaluation.")
    random_state: int = Field(default=42, ge=0, le=2**31 - 1, description="Seed for the split and estimator.")
    resources: Resources | None = Field(default=None, description="Training container resources.")
    backoff_limit: int = Field(default=2, ge=0, le=10, description="Job retries before it is Failed.")
    active_deadline_seconds: int = Field(default=3600, ge=1, le=7 * 86400, description="Job wall-time limit, seconds.")


_FRACTIONS = ("accuracy", "roc_auc", "precision", "recall", "f1_score")
#: The range of each bounded metric the runtime computes (``modelops_runtime.train.metrics``) as
#: ``(lowest, highest)``, None where unbounded: a ``min_value`` outside it can never be reached, or
#: always is, and is refused at admission (:class:`PromotionSpec`).
METRIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    **{name: (0.0, 1.0) for name in _FRACTIONS},
    **{f"{m}_{avg}": (0.0, 1.0) for m in ("precision", "recall", "f1") for avg in ("macro", "weighted")},
    "r2": (None, 1.0),  # sklearn.metrics.r2_score: 1 at best, unbounded below
    **{name: (0.0, None) for name in ("rmse", "mae", "training_time_s", "inference_time_ms")},
}


def _range_words(low: float | None, high: float | None) -> str:
    """``at least 0 and at most 1``: a metric's range in the words of the admission message."""
    words = (("at least", low), ("at most", high))
    return " and ".join(f"{word} {bound:g}" for word, bound in words if bound is not None)


def _metric_range_rules() -> list[Any]:
    """CEL rules refusing a ``minValue`` outside its metric's range (``METRIC_RANGES``), one per range."""
    by_range: dict[tuple[float | None, float | None], list[str]] = {}
    for metric, bounds in METRIC_RANGES.items():
        by_range.setdefault(bounds, []).append(metric)
    rules = []
    for (low, high), metrics in by_range.items():
        checks = [f"self.minValue {op} {bound!r}" for op, bound in ((">=", low), ("<=", high)) if bound is not None]
        why = f" must be {_range_words(low, high)}: outside that range the gate never passes, or always does"
        rules.append(
            {
                "rule": f"!has(self.minValue) || !(self.metric in {metrics!r}) || ({' && '.join(checks)})",
                "message": f"minValue of this metric{why}",
                "messageExpression": f"'minValue of ' + self.metric + '{why}'",
                "fieldPath": ".minValue",
                "reason": "FieldValueInvalid",
            }
        )
    return rules


class PromotionSpec(ApiModel):
    """The gate a version must pass to take its requested stage (``should_promote``).

    A ``minValue`` outside its metric's range (``METRIC_RANGES``: accuracy, F1,
    precision, recall and ROC AUC in [0, 1], R² at most 1, errors and times at least 0) is refused
    at admission: such a gate could never pass, or always would.
    """

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _metric_range_rules()})

    metric: str = Field(
        default="accuracy",
        max_length=128,
        description="Evaluation metric the gate compares, e.g. accuracy, f1_macro, r2.",
    )
    direction: Literal["maximize", "minimize"] | None = Field(
        default=None,
        description="Whether higher or lower is better; inferred (minimize for rmse, mae, *_time*) when unset.",
    )
    min_value: float | None = Field(
        default=None, description="The metric must reach this value (>= when maximizing, <= when minimizing)."
    )
    min_improvement: float = Field(
        default=0.0,
        ge=0,
        description="Required improvement over the version currently holding the stage (see improvementMode).",
    )
    improvement_mode: Literal["absolute", "relative"] = Field(
        default="absolute",
        description="absolute: difference in metric units; relative: fraction of the current holder's value.",
    )
    policy: Literal["Automatic", "Manual"] = Field(
        default="Automatic",
        description="Automatic promotes when the gate passes; Manual records the recommendation only.",
    )
    require_staging: bool = Field(
        default=False, description="Production requires this version to have been promoted to Staging before."
    )

    @model_validator(mode="after")
    def _min_value_in_range(self) -> PromotionSpec:
        """The CRD's rules (:func:`_metric_range_rules`), for clients that validate before applying."""
        low, high = METRIC_RANGES.get(self.metric, (None, None))
        value = self.min_value
        if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
            raise ValueError(
                f"minValue of {self.metric} must be {_range_words(low, high)}, got {value:g}: "
                "outside that range the gate never passes, or always does"
            )
        return self


class AutoscalingSpec(ApiModel):
    """HorizontalPodAutoscaler settings for the serving Deployment."""

    min_replicas: int = Field(default=1, ge=1, le=100, description="Lower replica bound.")
    max_replicas: int = Field(default=3, ge=1, le=100, description="Upper replica bound.")
    target_cpu_utilization: int = Field(
        default=80, ge=1, le=100, description="Target average CPU utilisation, percent of requests."
    )


class ServingLimits(ApiModel):
    """Request limits of the model server (docs/serving.md, "Limits"); unset fields keep the server's
    defaults. Each becomes the serving container's ``MODELOPS_SERVE_<FIELD>`` variable."""

    max_body_bytes: int | None = Field(
        default=None, ge=1024, le=1024**3, description="Largest request body, compressed and decompressed, bytes (413)."
    )
    max_rows: int | None = Field(default=None, ge=1, le=10_000_000, description="Most rows in one request (413).")
    max_header_bytes: int | None = Field(
        default=None, ge=4096, le=1024**2, description="Largest request line plus headers, bytes (431)."
    )
    request_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="Time a client has to send a whole request (408) and to read an answer, s.",
    )
    keep_alive_seconds: int | None = Field(default=None, ge=1, le=3600, description="Idle keep-alive timeout, s.")


class BatchingSpec(ApiModel):
    """Adaptive batching of the model server (docs/serving.md, "Adaptive batching"): concurrent infer
    requests of a server process are merged into one ``predict`` call, off unless set."""

    max_batch_size: int = Field(
        default=32, ge=2, le=100_000, description="Most rows in one merged predict call; larger requests run alone."
    )
    max_wait_milliseconds: float = Field(
        default=5.0,
        ge=0,
        le=1000,
        description="Longest a request waits for others to join its batch, ms (0: only requests already queued).",
    )


class ServingSpec(ApiModel):
    """The serving Deployment for this model's stage, when this version serves it."""

    replicas: int = Field(default=1, ge=0, le=100, description="Serving pods (ignored with autoscaling).")
    resources: Resources | None = Field(default=None, description="Serving container resources.")
    autoscaling: AutoscalingSpec | None = Field(default=None, description="Enables an HPA when set.")
    image: str | None = Field(default=None, max_length=512, description="Runtime image override.")
    limits: ServingLimits | None = Field(default=None, description="Model server request limits.")
    workers: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Server processes per pod, sharing its port and its metrics (docs/serving.md, \"Workers\"); "
        "set it to the pod's CPU cores.",
    )
    batching: BatchingSpec | None = Field(default=None, description="Adaptive batching; off when unset.")


class RolloutShadow(ApiModel):
    """The shadow phase: the incumbent answers every request and copies a share of them to the candidate."""

    sample_rate: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of requests copied to the candidate (exact per serving pod: every 1/rate-th request).",
    )
    pause_seconds: int = Field(default=300, ge=1, le=7 * 86400, description="Length of the shadow analysis window, s.")


class RolloutStep(ApiModel):
    """One canary step: the candidate answers ``weight`` percent of live requests for ``pauseSeconds``."""

    weight: int = Field(ge=1, le=99, description="Percent of live requests the candidate answers (exact per pod).")
    pause_seconds: int = Field(ge=1, le=7 * 86400, description="Length of this step's analysis window, s.")


class RolloutAnalysis(ApiModel):
    """Bounds checked on the candidate's live traffic in every window, each relative to the incumbent
    over the same window (docs/rollout.md, "Decision rules")."""

    min_requests: int = Field(
        default=100,
        ge=1,
        le=10_000_000,
        description="Requests the candidate and the incumbent must each have in the window before any decision.",
    )
    max_error_rate_increase: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Candidate error rate may exceed the incumbent's by at most this (fraction of requests).",
    )
    max_latency_p95_ratio: float = Field(
        default=2.0, ge=1, le=100, description="Candidate p95 latency <= ratio x incumbent p95 + latencySlackMs."
    )
    latency_slack_ms: float = Field(
        default=20.0, ge=0, le=60_000, description="Absolute slack of the latency bound, ms (noise at low latencies)."
    )
    min_agreement: float | None = Field(
        default=0.9,
        ge=0,
        le=1,
        description=(
            "Shadow: share of rows where candidate and incumbent predict the same; canary: 1 - total variation "
            "distance of their predicted-class distributions. 0 turns the check off (a null is defaulted by the "
            "API server)."
        ),
    )
    max_accuracy_drop: float | None = Field(
        default=0.05,
        ge=0,
        le=1,
        description=(
            "Feedback accuracy: candidate >= incumbent - this, once both have minFeedback labelled rows "
            "(read from the prediction log: only when the operator is set to read it, docs/rollout.md); "
            "1 turns the check off."
        ),
    )
    min_feedback: int = Field(
        default=30, ge=1, le=10_000_000, description="Labelled rows each side needs before accuracy is compared."
    )
    max_drift_share_increase: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Drift of the candidate's inputs: at the end of each window a drift Job compares the rows each side "
            "answered in it with that side's training reference sample; candidate drift share - incumbent drift "
            "share above this fails. Needs the prediction log. Unset: not checked (docs/rollout.md)."
        ),
    )


class RolloutSpec(ApiModel):
    """How a version that wins its stage replaces the incumbent (docs/rollout.md)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.strategy != 'Canary' || (has(self.steps) && size(self.steps) > 0)",
                    "message": "strategy Canary needs at least one step",
                    "fieldPath": ".steps",
                    "reason": "FieldValueRequired",
                },
                {
                    "rule": "self.strategy == 'Canary' || !has(self.steps) || size(self.steps) == 0",
                    "message": "steps are only allowed with strategy Canary",
                    "fieldPath": ".steps",
                    "reason": "FieldValueForbidden",
                },
                {
                    "rule": "!has(self.steps) "
                    "|| self.steps.all(s, size(self.steps.filter(t, t.weight == s.weight)) == 1)",
                    "message": "step weights must be unique",
                    "fieldPath": ".steps",
                    "reason": "FieldValueDuplicate",
                },
                {
                    "rule": "!has(self.steps) || self.steps.map(s, s.weight).isSorted()",
                    "message": "step weights must increase",
                    "fieldPath": ".steps",
                    "reason": "FieldValueInvalid",
                },
            ]
        }
    )

    strategy: Literal["Immediate", "Shadow", "Canary"] = Field(
        default="Immediate",
        description=(
            "Immediate: replace the incumbent at once (rolling update). Shadow: an analysis window on copied "
            "requests, then promote. Canary: the optional shadow window, then the steps, then promote."
        ),
    )
    shadow: RolloutShadow | None = Field(
        default=None, description="Shadow phase (Shadow: defaults when unset; Canary: only when set)."
    )
    steps: list[RolloutStep] | None = Field(
        default=None, max_length=10, description="Canary steps, weights strictly increasing (1-99 percent)."
    )
    analysis: RolloutAnalysis = Field(default_factory=RolloutAnalysis, description="Bounds of every window.")
    on_failure: Literal["Abort", "Pause"] = Field(
        default="Abort",
        description=(
            "Abort: traffic returns to the incumbent, phase RolloutAborted. Pause: hold the step until "
            "spec.rollout changes."
        ),
    )

    @model_validator(mode="after")
    def _steps(self) -> RolloutSpec:
        """The CRD's rules, for clients that validate before applying (and the emulator without isSorted)."""
        weights = [s.weight for s in self.steps or []]
        if self.strategy == "Canary" and not weights:
            raise ValueError("strategy Canary needs at least one step")
        if self.strategy != "Canary" and weights:
            raise ValueError("steps are only allowed with strategy Canary")
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"step weights must increase strictly, got {weights}")
        return self


class MlflowOverrides(ApiModel):
    """Per-version overrides of the operator's MLflow settings."""

    tracking_uri: str | None = Field(default=None, max_length=2048, description="MLflow tracking server URI.")
    experiment: str | None = Field(
        default=None, max_length=256, description="Training experiment name (default model-training)."
    )
    credentials_secret: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_LABEL,
        description="Secret in this namespace with MLFLOW_TRACKING_USERNAME/PASSWORD or _TOKEN keys.",
    )


class ModelVersionSpec(ApiModel):
    """Desired state of a ModelVersion."""

    model: str = Field(
        description="Registered model name in MLflow; also names the serving Deployment (<model>-<stage>).",
        min_length=1,
        max_length=40,
        pattern=DNS_LABEL,
    )
    version: str | None = Field(
        default=None,
        max_length=64,
        pattern=SEMVER_PATTERN,
        description="Semantic version (MAJOR.MINOR.PATCH). Exactly one of version or versionBump.",
    )
    version_bump: VersionBump | None = Field(
        default=None,
        description="Bump the highest registered semantic version of the model. Exactly one of version or versionBump.",
    )
    stage: Stage = Field(default="Development", description="Desired stage; the gate decides if it is granted.")
    training: TrainingSpec = Field(description="Training job settings.")
    promotion: PromotionSpec = Field(default_factory=PromotionSpec, description="Promotion gate.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="Serving settings.")
    mlflow: MlflowOverrides | None = Field(default=None, description="MLflow overrides.")
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec, description="How this version replaces the stage's incumbent (docs/rollout.md)."
    )


Phase = Literal[
    "Pending",
    "Training",
    "Registering",
    "Registered",
    "GateFailed",
    "Promoted",
    "Ready",
    "Superseded",
    "Failed",
    "Archived",
    "RollingOut",
    "RolloutPaused",
    "RolloutAborted",
]


class RegistryStatus(ApiModel):
    """Where this version lives in the MLflow model registry."""

    model: str = Field(description="Registered model name.")
    version: str = Field(description="MLflow registry version number (a string of digits).")
    run_id: str = Field(description="MLflow run id of the training run.")
    model_uri: str = Field(description="Pinned model URI, models:/<name>/<version>.")
    experiment: str | None = Field(default=None, description="Training experiment name.")


class ModelMetadata(ApiModel):
    """What was trained (the original document's model metadata)."""

    framework: str = Field(default="scikit-learn", description="ML framework.")
    framework_version: str | None = Field(default=None, description="Framework version used for training.")
    algorithm: str | None = Field(default=None, description="Estimator class name.")
    task: Literal["classification", "regression"] | None = Field(default=None, description="Learning task.")
    size_bytes: int | None = Field(default=None, ge=0, description="Serialized model size, bytes.")
    training_rows: int | None = Field(default=None, ge=0, description="Rows used for fitting.")
    features: list[str] | None = Field(default=None, description="Input feature names, in signature order.")
    classes: list[str] | None = Field(default=None, description="Target classes (classification).")
    dataset_hash: str | None = Field(default=None, description="SHA-256 of the training data content.")


Decision = Literal["Promoted", "GateFailed", "Superseded", "Recommended", "Pending", "NotRequested", "Released"]


class PromotionStatus(ApiModel):
    """The latest promotion decision for the requested stage."""

    decision: Decision = Field(description="Outcome of the gate and stage resolution.")
    stage: str | None = Field(default=None, description="Stage the decision is about.")
    reason: str = Field(default="", description="Why, with the numbers compared.")
    metric: str | None = Field(default=None, description="Gate metric.")
    value: float | None = Field(default=None, description="This version's metric value.")
    compared_to: str | None = Field(default=None, description="Semantic version it was compared against.")
    compared_value: float | None = Field(default=None, description="That version's metric value.")
    time: datetime | None = Field(default=None, description="When the decision was made.")


class PromotionRecord(ApiModel):
    """One entry of the bounded promotion history."""

    version: str = Field(description="Semantic version the decision is about.")
    stage: str = Field(description="Stage.")
    decision: Decision = Field(description="Outcome.")
    reason: str = Field(default="", description="Why.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Metric snapshot at decision time.")
    time: datetime = Field(description="When.")


class ServingStatus(ApiModel):
    """The stage's serving Deployment, as observed."""

    deployment: str | None = Field(default=None, description="Deployment name.")
    service: str | None = Field(default=None, description="Service name.")
    url: str | None = Field(default=None, description="In-cluster URL of the model server.")
    replicas: int | None = Field(default=None, ge=0, description="Desired replicas.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Ready replicas.")
    served_version: str | None = Field(default=None, description="Semantic version the Deployment serves.")


class TrainingJobStatus(ApiModel):
    """The training Job, as observed."""

    name: str = Field(description="Job name.")
    start_time: datetime | None = Field(default=None, description="Job start.")
    completion_time: datetime | None = Field(default=None, description="Job completion.")
    failed_pods: int | None = Field(default=None, ge=0, description="Failed attempts so far.")
    failure_reason: str | None = Field(default=None, description="Why training failed.")
    exit_code: int | None = Field(default=None, description="Exit code of the last failed training container.")
    signal: str | None = Field(
        default=None, description="Signal that killed the last failed training container (e.g. SIGKILL), if any."
    )


RolloutPhase = Literal["Waiting", "Shadow", "Canary", "Paused", "Aborted", "Promoted"]
RolloutAction = Literal["Wait", "NextStep", "Promote", "Abort", "Pause"]


class WindowNumbers(ApiModel):
    """What one side (candidate or incumbent) did in the current analysis window: requests, errors and
    latency from the serving pods' /metrics, feedback accuracy from the prediction log (docs/rollout.md)."""

    requests: int = Field(default=0, ge=0, description="Requests in the window.")
    errors: int = Field(default=0, ge=0, description="Failed requests.")
    error_rate: float | None = Field(default=None, description="errors / requests.")
    latency_p95_ms: float | None = Field(
        default=None, description="95th percentile of server-side request latency (its own pods' /metrics), ms."
    )
    round_trip_p95_ms: float | None = Field(
        default=None, description="Candidate: 95th percentile of the router's round trips to it, ms (the extra hop)."
    )
    labelled: int = Field(default=0, ge=0, description="Rows with a feedback label.")
    accuracy: float | None = Field(default=None, description="Share of labelled rows predicted right.")


class RolloutAnalysisStatus(ApiModel):
    """The numbers of the latest analysis of the current window."""

    window_start: datetime | None = Field(default=None, description="Start of the window (router in effect).")
    time: datetime | None = Field(default=None, description="When these numbers were read.")
    candidate: WindowNumbers = Field(default_factory=WindowNumbers, description="The candidate's numbers.")
    incumbent: WindowNumbers = Field(default_factory=WindowNumbers, description="The incumbent's numbers.")
    compared: int = Field(default=0, ge=0, description="Rows compared for agreement.")
    shadow_dropped: int = Field(
        default=0,
        ge=0,
        description="Shadow: copies the incumbent's pods dropped in the window (no CPU or queue room to send "
        "them, or their shadow sender restarting); they count for neither side, so the window waits longer "
        "for minRequests.",
    )
    shadow_dropped_warned: bool = Field(
        default=False,
        description="Shadow: the window's ShadowCopiesDropped warning was posted (once per window, however "
        "often the share of dropped copies crosses 10 % again).",
    )
    agreement: float | None = Field(default=None, description="Prediction agreement (see analysis.minAgreement).")
    agreement_p_value: float | None = Field(
        default=None, description="Canary: chi-square p-value that both sides predict classes alike (noise check)."
    )
    failed: list[str] = Field(default_factory=list, max_length=10, description="Bounds that failed, with numbers.")


class SideCounters(ApiModel):
    """One side's counters in the current window, from its serving pods' /metrics (rollout/window.py)."""

    pods: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Last scraped value of each series the analysis needs, per pod name."
    )
    increase: dict[str, float] = Field(
        default_factory=dict, description="Increase of each series over the window so far (counter resets handled)."
    )


class WindowCounters(ApiModel):
    """The window's counters of both sides, kept so that an operator restarted mid-window continues them."""

    incumbent: SideCounters = Field(default_factory=SideCounters, description="The incumbent's pods (and router).")
    candidate: SideCounters = Field(default_factory=SideCounters, description="The candidate's pods.")


DriftCheckState = Literal["Running", "Completed", "NotChecked", "Failed"]


class RolloutDriftStatus(ApiModel):
    """The drift check of the current window (analysis.maxDriftShareIncrease): one drift Job per side."""

    state: DriftCheckState = Field(
        description="Running; Completed (shares read); NotChecked (too few rows, no reference sample: the bound "
        "is not applied); Failed (a Job failed: the rollout pauses, see message)."
    )
    window_end: datetime | None = Field(
        default=None,
        description="End of the rows checked (when the check began; its Jobs start once those rows are written).",
    )
    jobs: list[str] = Field(default_factory=list, max_length=2, description="The drift Jobs (candidate, incumbent).")
    candidate_share: float | None = Field(
        default=None, ge=0, le=1, description="Share of features drifted between the candidate's rows and reference."
    )
    incumbent_share: float | None = Field(
        default=None, ge=0, le=1, description="Same for the incumbent's rows and its own reference."
    )
    candidate_run: str | None = Field(default=None, description="MLflow run of the candidate's check (its report).")
    incumbent_run: str | None = Field(default=None, description="MLflow run of the incumbent's check.")
    message: str = Field(default="", description="Why not checked or failed; the drifted features otherwise.")


def _progress_schema(schema: dict[str, Any]) -> None:
    schema["properties"]["progress"] = {
        "type": "string",
        "maxLength": 16,
        "description": "The step as kubectl shows it and reasons name it: '2/3' (1-based; from step and steps).",
    }


class RolloutStatus(ApiModel):
    """Progressive delivery state of this version as a candidate (level-based: the operator resumes from it).

    ``progress`` (``"2/3"``) is written with it for ``kubectl get`` and read back as nothing: it is
    derived from ``step`` and ``steps`` when serialised, so it is never stale and never makes two
    equal states differ.
    """

    model_config = ConfigDict(json_schema_extra=_progress_schema)

    phase: RolloutPhase = Field(description="Waiting, Shadow, Canary, Paused, Aborted or Promoted.")
    stage: str = Field(description="Stage rolled out to.")
    incumbent: str | None = Field(default=None, description="Semantic version compared against.")
    spec_hash: str = Field(description="Hash of spec.rollout and the incumbent; a change restarts the rollout.")
    step: int = Field(default=0, ge=0, description="Index of the current step (the shadow window counts as one).")
    steps: int = Field(default=0, ge=0, description="Number of steps (shadow window included).")
    weight: int = Field(default=0, ge=0, le=100, description="Percent of live requests the candidate answers.")
    sample_rate: float | None = Field(default=None, description="Shadow share of requests copied.")
    step_started: datetime | None = Field(
        default=None, description="When the current step's window started (router setting in effect); unset: not yet."
    )
    action: RolloutAction | None = Field(default=None, description="Latest decision.")
    reason: str = Field(default="", description="Why, with the numbers.")
    analysis: RolloutAnalysisStatus | None = Field(default=None, description="Latest analysis numbers.")
    counters: WindowCounters | None = Field(
        default=None, description="The current window's counters from the serving pods' /metrics (unset: not started)."
    )
    drift: RolloutDriftStatus | None = Field(
        default=None, description="The current window's drift check (analysis.maxDriftShareIncrease; unset: none yet)."
    )
    time: datetime | None = Field(default=None, description="When the phase last changed.")

    @model_validator(mode="before")
    @classmethod
    def _without_progress(cls, data: Any) -> Any:
        if isinstance(data, dict) and "progress" in data:
            return {k: v for k, v in data.items() if k != "progress"}
        return data

    @model_serializer(mode="wrap")
    def _with_progress(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Serialise with ``progress`` derived from ``step`` and ``steps`` (never stale after a step
        moved; a finished rollout's step index may be past the last step)."""
        out: dict[str, Any] = handler(self)
        if self.steps:
            out["progress"] = f"{min(self.step + 1, self.steps)}/{self.steps}"
        return out


class ModelVersionStatus(ApiModel):
    """Observed state of a ModelVersion, written only by the operator."""

    observed_generation: int | None = Field(default=None, ge=0, description="metadata.generation last handled.")
    phase: Phase | None = Field(default=None, description="One-word summary of the conditions.")
    conditions: list[Condition] = Field(
        default_factory=list, max_length=32, description="Trained, Registered, Promoted, Serving, Ready."
    )
    version: str | None = Field(default=None, description="Resolved semantic version, frozen once set.")
    parent_version: str | None = Field(default=None, description="Highest registered version when resolved (lineage).")
    registry: RegistryStatus | None = Field(default=None, description="MLflow registry location.")
    metrics: dict[str, float] | None = Field(default=None, description="Evaluation metrics from the training run.")
    metric_summary: str | None = Field(default=None, description="The gate metric as name=value, for kubectl get.")
    model: ModelMetadata | None = Field(default=None, description="Model metadata.")
    stage: str | None = Field(default=None, description="Stage this version currently holds (None if none).")
    promotion: PromotionStatus | None = Field(default=None, description="Latest promotion decision.")
    promotion_history: list[PromotionRecord] = Field(
        default_factory=list, max_length=20, description="Last promotion decisions, newest last."
    )
    serving: ServingStatus | None = Field(default=None, description="Serving state when this version serves.")
    training_job: TrainingJobStatus | None = Field(default=None, description="Training Job state.")
    training_hash: str | None = Field(
        default=None, description="Hash of spec.training that was trained; a registered version is immutable."
    )
    rollout: RolloutStatus | None = Field(default=None, description="Progressive delivery as a candidate.")
