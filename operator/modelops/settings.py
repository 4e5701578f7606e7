"""Operator settings: one pydantic-settings class, env prefix ``MODELOPS_``, loaded once at start-up.

The operator keeps the loaded instance in kopf's memo; nothing reads the environment afterwards.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import __version__
from .contract import EXPERIMENT_EVALUATION, EXPERIMENT_MONITORING, EXPERIMENT_TRAINING
from .datapolicy import DEFAULT_DATA_PATH, DEFAULT_DENIED_HOSTS, DEFAULT_SCHEMES, DataUriPolicy

ServedStage = Literal["Development", "Staging", "Production"]

#: Image of the runtime (train, serve, drift) built from serving_image/Dockerfile.
DEFAULT_RUNTIME_IMAGE = f"modelops-runtime:{__version__}"


def _default_served_stages() -> list[ServedStage]:
    return ["Staging", "Production"]


class Settings(BaseSettings):
    """Operator configuration. Every field is read from ``MODELOPS_<FIELD>`` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="MODELOPS_", extra="ignore")

    mlflow_tracking_uri: str = Field(
        default="http://mlflow:5000", description="MLflow tracking server used by the operator and its pods."
    )
    mlflow_credentials_secret: str | None = Field(
        default=None,
        description="Secret (in each CR's namespace) whose MLFLOW_TRACKING_* keys child pods get via secretKeyRef.",
    )
    runtime_image: str = Field(default=DEFAULT_RUNTIME_IMAGE, description="Runtime image for Jobs and Deployments.")
    image_pull_policy: str = Field(default="IfNotPresent", description="imagePullPolicy of child pods.")
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Namespaces to watch (comma-separated in env); empty = all namespaces."
    )
    experiment_training: str = Field(default=EXPERIMENT_TRAINING, description="Training experiment.")
    experiment_evaluation: str = Field(default=EXPERIMENT_EVALUATION, description="Evaluation experiment.")
    experiment_monitoring: str = Field(default=EXPERIMENT_MONITORING, description="Monitoring experiment.")
    allowed_estimator_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["sklearn."], description="Module prefixes estimators may come from."
    )
    prediction_log_uri: str = Field(
        default="/var/lib/modelops/predictions",
        description="fsspec directory for prediction logs, shared by serving pods and drift jobs.",
    )
    prediction_log_volume_claim: str | None = Field(
        default=None, description="PVC mounted at prediction_log_uri in serving and drift pods (local paths)."
    )
    data_allowed_schemes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SCHEMES),
        description="URI schemes spec.training.data.uri may use (file = local paths under data_path_prefixes).",
    )
    data_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"], description="Shell-style patterns of http(s) hosts and s3 buckets allowed."
    )
    data_denied_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_DENIED_HOSTS),
        description="Host patterns refused (loopback and cluster-internal names) unless listed exactly as allowed.",
    )
    data_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs datasets may come from besides global addresses (none: no loopback/private/link-local).",
    )
    data_path_prefixes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEFAULT_DATA_PATH], description="Local folders datasets may be read from."
    )
    data_volume_claim: str | None = Field(
        default=None,
        description="PVC mounted read-only at the first data_path_prefixes entry in training and drift pods.",
    )
    framework_version_match: Literal["exact", "minor"] = Field(
        default="exact",
        description="Model servers refuse a model saved with another scikit-learn version; minor: major.minor only.",
    )
    served_stages: Annotated[list[ServedStage], NoDecode] = Field(
        default_factory=_default_served_stages, description="Stages that get a serving Deployment."
    )
    cluster_domain: str = Field(default="cluster.local", description="DNS suffix for in-cluster URLs.")
    service_url_annotation: str | None = Field(
        default=None,
        description=(
            "Annotation of a Service holding the URL serving pods reach it at, used for a rollout candidate's "
            "URL instead of in-cluster DNS (the sandbox sets its forwarders' sandbox.modelops.io/url)."
        ),
    )
    rollout_feedback_from_log: bool = Field(
        default=False,
        description=(
            "The operator reads feedback labels and both sides' rows from prediction_log_uri to judge a rollout's "
            "feedback accuracy (needs a log the operator can read: an object store, or a folder it shares); "
            "off: accuracy is not checked. Every other rollout number comes from the serving pods' /metrics."
        ),
    )
    pod_network_map: str | None = Field(
        default=None,
        description=(
            "'<pod CIDR>=<CIDR>': where the operator reaches pod IPs it cannot route to (same offset in the "
            "second network), for scraping serving pods' /metrics and reading a not-ready server's refusal on "
            "/v2/health/ready; the sandbox maps pod IPs to loopback addresses."
        ),
    )
    metrics_scrape_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Time a serving pod's /metrics (or /v2/health/ready) has to answer the operator's GET, s.",
    )
    reconcile_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Resync period, s: versions in progress reconcile, settled models compare MLflow with "
            "their statuses (full pass every 10x; docs/operator.md)."
        ),
    )
    monitor_poll_seconds: float = Field(default=15.0, gt=0, description="How often monitors read MLflow, s.")
    job_ttl_seconds: int = Field(default=86400, ge=0, description="ttlSecondsAfterFinished of training Jobs.")
    promotion_history_limit: int = Field(default=10, ge=1, le=20, description="Promotion decisions kept (at most 20).")
    metrics_port: int = Field(default=8000, ge=0, description="Operator Prometheus /metrics port (0 disables).")
    health_port: int = Field(default=8081, ge=0, description="kopf liveness endpoint port (0 disables).")
    lease_name: str = Field(
        default="modelops-operator",
        description="coordination.k8s.io Lease the replicas elect their one active operator through.",
    )
    lease_namespace: str | None = Field(
        default=None,
        description="Namespace of the Lease; default: the pod's own namespace (service account), else default.",
    )
    lease_duration_seconds: float = Field(
        default=15.0, gt=0, description="How long a standby waits after the last renewal seen before taking over, s."
    )
    lease_renew_deadline_seconds: float = Field(
        default=10.0, gt=0, description="The leader stops (exits) when it could not renew for this long, s."
    )
    lease_retry_seconds: float = Field(default=2.0, gt=0, description="Renewal and standby retry period, s.")
    finalizer: str = Field(default="ml.smarthr360.io/finalizer", description="Finalizer added to CRs.")
    annotation_prefix: str = Field(default="ml.smarthr360.io", description="Prefix of kopf's own annotations.")

    @model_validator(mode="after")
    def _lease_timing(self) -> Settings:
        """The leader must give up (renew deadline) before a standby may take over (lease duration)."""
        if not self.lease_retry_seconds < self.lease_renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError(
                "need lease_retry_seconds < lease_renew_deadline_seconds < lease_duration_seconds, got "
                f"{self.lease_retry_seconds} / {self.lease_renew_deadline_seconds} / {self.lease_duration_seconds}"
            )
        return self

    @field_validator(
        "namespaces",
        "allowed_estimator_modules",
        "served_stages",
        "data_allowed_schemes",
        "data_allowed_hosts",
        "data_denied_hosts",
        "data_allowed_networks",
        "data_path_prefixes",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        """Accept ``a,b,c`` from the environment as well as a list."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("data_allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        """Each entry must be a CIDR (``10.0.0.0/8``, ``127.0.0.1/32``, ``fd00::/8``)."""
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("pod_network_map")
    @classmethod
    def _network_map(cls, value: str | None) -> str | None:
        """``<CIDR>=<CIDR>`` of the same size."""
        if value:
            source, _, target = value.partition("=")
            a, b = ipaddress.ip_network(source.strip()), ipaddress.ip_network(target.strip())
            if a.num_addresses != b.num_addresses:
                raise ValueError(f"pod_network_map: {a} and {b} differ in size")
        return value or None

    def pod_address(self, ip: str) -> str:
        """Where the operator reaches pod IP ``ip`` (``pod_network_map`` applied; unchanged otherwise)."""
        if not self.pod_network_map:
            return ip
        source, _, target = self.pod_network_map.partition("=")
        a, b = ipaddress.ip_network(source.strip()), ipaddress.ip_network(target.strip())
        address = ipaddress.ip_address(ip)
        if address not in a:
            return ip
        return str(b.network_address + (int(address) - int(a.network_address)))

    @property
    def data_policy(self) -> DataUriPolicy:
        """The data URI policy checked at reconcile time and passed to training pods."""
        return DataUriPolicy(
            allowed_schemes=self.data_allowed_schemes,
            allowed_hosts=self.data_allowed_hosts,
            denied_hosts=self.data_denied_hosts,
            allowed_networks=self.data_allowed_networks,
            local_path_prefixes=self.data_path_prefixes,
        )
