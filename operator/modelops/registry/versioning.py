"""The original document's model versioning API (``ml/model_versioning.py``), backed by the MLflow registry.

* :func:`create_model_version` builds a :class:`ModelVersionMetadata` (the document's metadata fields);
* :class:`ModelVersionManager` registers such versions and reads them back from MLflow model
  version tags (plus the training run's metrics, params and ``model.*`` tags), instead of the
  document's JSON file. Promotion decisions use :func:`modelops.registry.gate.evaluate_gate`,
  the same gate the operator applies.

Tags written on a model version (all strings, lists/dicts as JSON):
``semver``, ``semver.parent``, ``stage``, and ``model.<field>`` for framework, algorithm, id,
path, size_bytes, training_rows, features, classes, hyperparameters, metrics, created_at.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, Field, field_validator

from ..api.modelversion import STAGE_ALIASES
from ..contract import TAG_META_PREFIX, TAG_PARENT, TAG_SEMVER, TAG_STAGE, TrainingResult
from . import operations as ops
from .errors import is_not_found, translate_errors
from .gate import Direction, ImprovementMode, evaluate_gate
from .semantic import ChangeType, bump_version, parse_semver

#: MLflow's limit on a tag value; longer JSON values (e.g. thousands of features) are not stored as tags.
MAX_TAG_VALUE = 8000
_MIB = 1024 * 1024
#: Run params logged by the training runtime that are not estimator hyperparameters.
TRAIN_PARAM_PREFIX = "train."


class ModelVersionMetadata(BaseModel):
    """Metadata of one model version (the original document's fields, plus ``registry_version``)."""

    model_id: str = Field(description="Identifier, model_<version_string> unless given.")
    version_string: str = Field(description="Semantic version MAJOR.MINOR.PATCH[-pre].")
    framework: str = "scikit-learn"
    algorithm: str | None = None
    model_path: str | None = Field(default=None, description="Where the model is (a path or MLflow URI).")
    model_size_mb: float | None = Field(default=None, ge=0, description="Serialised size, MiB.")
    training_dataset_size: int | None = Field(default=None, ge=0, description="Rows used for fitting.")
    training_features: list[str] = Field(default_factory=list)
    target_classes: list[str] | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    stage: str = Field(default="Development", description="Development, Staging, Production, Archived or None.")
    parent_version: str | None = None
    mlflow_run_id: str | None = None
    registry_version: str | None = Field(default=None, description="MLflow registry version number, once registered.")

    @field_validator("version_string", "parent_version")
    @classmethod
    def _semver(cls, value: str | None) -> str | None:
        if value is not None:
            parse_semver(value)  # ValueError with semver's message
        return value

    @field_validator("stage")
    @classmethod
    def _stage(cls, value: str) -> str:
        return ops.normalize_stage(value)

    def __str__(self) -> str:
        return self.version_string


def create_model_version(
    version_string: str,
    metrics: dict[str, float] | None = None,
    model_path: str | None = None,
    framework: str = "scikit-learn",
    algorithm: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    stage: str = "Development",
    mlflow_run_id: str | None = None,
    parent_version: str | None = None,
    training_features: list[str] | None = None,
    target_classes: list[str] | None = None,
    model_size_mb: float | None = None,
    training_dataset_size: int | None = None,
    model_id: str | None = None,
) -> ModelVersionMetadata:
    """Build the metadata of a model version (no I/O); ``pydantic.ValidationError`` for a bad semver or stage."""
    return ModelVersionMetadata(
        model_id=model_id or f"model_{version_string}",
        version_string=version_string,
        framework=framework,
        algorithm=algorithm,
        model_path=model_path,
        model_size_mb=model_size_mb,
        training_dataset_size=training_dataset_size,
        training_features=list(training_features or []),
        target_classes=list(target_classes) if target_classes is not None else None,
        hyperparameters=dict(hyperparameters or {}),
        metrics=dict(metrics or {}),
        stage=stage,
        parent_version=parent_version,
        mlflow_run_id=mlflow_run_id,
    )


def _json_tag(value: Any) -> str | None:
    """``value`` as JSON for a tag, or None when it would exceed MLflow's tag length."""
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= MAX_TAG_VALUE else None


def metadata_tags(version: ModelVersionMetadata) -> dict[str, str]:
    """The model-version tags that encode ``version`` (see the module docstring)."""
    meta = TrainingResult(
        algorithm=version.algorithm,
        size_bytes=round(version.model_size_mb * _MIB) if version.model_size_mb is not None else None,
        training_rows=version.training_dataset_size,
    ).to_tags()
    extra: dict[str, str | None] = {
        "framework": version.framework,
        "id": version.model_id,
        "path": version.model_path,
        "created_at": version.created_at.isoformat(),
        "features": _json_tag(version.training_features) if version.training_features else None,
        "classes": _json_tag(version.target_classes) if version.target_classes is not None else None,
        "hyperparameters": _json_tag(version.hyperparameters) if version.hyperparameters else None,
        "metrics": _json_tag(version.metrics) if version.metrics else None,
    }
    tags = {TAG_SEMVER: version.version_string, **meta}
    tags.update({TAG_META_PREFIX + k: v for k, v in extra.items() if v is not None})
    if version.parent_version:
        tags[TAG_PARENT] = version.parent_version
    return tags


def _hyperparameters_from_params(params: dict[str, str]) -> dict[str, Any]:
    """Run params minus the runtime's own ``train.*`` keys, with JSON-looking values decoded."""
    out: dict[str, Any] = {}
    for key, raw in params.items():
        if key.startswith(TRAIN_PARAM_PREFIX):
            continue
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


class ModelVersionManager:
    """Versions of one registered model, read from and written to the MLflow registry.

    Args:
        model_name: registered model name (created on the first :meth:`register_version`).
        client: an ``MlflowClient``; default: one for the current tracking/registry URI.

    Every method does blocking I/O and raises
    :class:`~modelops.registry.errors.RegistryUnavailable` when MLflow cannot be reached.
    """

    def __init__(self, model_name: str = "future-skills-model", client: MlflowClient | None = None) -> None:
        self.model_name = model_name
        self.client = client or MlflowClient()

    # -- reading -----------------------------------------------------------------------------

    def _run(self, run_id: str | None) -> Run | None:
        if not run_id:
            return None
        with translate_errors("get_run"):
            try:
                return self.client.get_run(run_id)
            except MlflowException as exc:
                if is_not_found(exc):
                    return None
                raise

    def _to_metadata(self, mv: ModelVersion) -> ModelVersionMetadata | None:
        """Metadata of a registry version; None when it has no semver tag (not a managed version)."""
        tags = dict(mv.tags or {})
        semver = tags.get(TAG_SEMVER)
        if not semver:
            return None
        run = self._run(mv.run_id)
        run_tags = dict(run.data.tags) if run else {}
        result = TrainingResult.from_tags({**run_tags, **tags})

        def meta(key: str) -> str | None:
            return tags.get(TAG_META_PREFIX + key)

        metrics_tag, hp_tag = meta("metrics"), meta("hyperparameters")
        metrics = json.loads(metrics_tag) if metrics_tag else (dict(run.data.metrics) if run else {})
        hyper = json.loads(hp_tag) if hp_tag else (_hyperparameters_from_params(dict(run.data.params)) if run else {})
        created = meta("created_at")
        stage = tags.get(TAG_STAGE) or next((s for s, a in STAGE_ALIASES.items() if a in (mv.aliases or [])), "None")
        return ModelVersionMetadata(
            model_id=meta("id") or f"model_{semver}",
            version_string=semver,
            framework=meta("framework") or "scikit-learn",
            algorithm=result.algorithm,
            model_path=meta("path") or mv.source,
            model_size_mb=result.size_bytes / _MIB if result.size_bytes is not None else None,
            training_dataset_size=result.training_rows,
            training_features=result.features or [],
            target_classes=result.classes,
            hyperparameters=hyper,
            metrics={k: float(v) for k, v in metrics.items()},
            created_at=(
                datetime.fromisoformat(created)
                if created
                else datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, UTC)
            ),
            stage=stage,
            parent_version=tags.get(TAG_PARENT),
            mlflow_run_id=mv.run_id,
            registry_version=str(mv.version),
        )

    def list_versions(self) -> list[ModelVersionMetadata]:
        """All managed versions (with a semver tag), lowest semantic version first."""
        found = [m for m in (self._to_metadata(v) for v in ops.list_versions(self.client, self.model_name)) if m]
        return sorted(found, key=lambda m: parse_semver(m.version_string))

    def get_version(self, version_string: str) -> ModelVersionMetadata | None:
        """The version tagged with semantic version ``version_string``, or None."""
        mv = ops.find_version_by_semver(self.client, self.model_name, version_string)
        return self._to_metadata(mv) if mv else None

    def get_latest_version(self) -> ModelVersionMetadata | None:
        """The version with the highest semantic version (not the most recently created), or None."""
        versions = self.list_versions()
        return versions[-1] if versions else None

    def get_production_version(self) -> ModelVersionMetadata | None:
        """The version the ``production`` alias points to, or None."""
        number = ops.get_alias(self.client, self.model_name, STAGE_ALIASES["Production"])
        if number is None:
            return None
        mv = ops.get_version(self.client, self.model_name, number)
        return self._to_metadata(mv) if mv else None

    # -- writing -----------------------------------------------------------------------------

    def register_version(self, version: ModelVersionMetadata) -> ModelVersionMetadata:
        """Register ``version`` in MLflow (idempotent per run), apply its stage; return it with ``registry_version``.

        The model comes from ``version.mlflow_run_id`` (its logged ``model``), or from
        ``version.model_path`` when that is an MLflow model URI (``runs:/…``, ``models:/m-…``).
        A stage other than Development is applied with aliases and tags
        (:func:`~modelops.registry.operations.transition_stage`, archiving the previous holder).

        Raises:
            ValueError: no run id or model URI, or the semantic version is already registered from
                another run.
            LoggedModelNotFound: the run has no logged model.
        """
        existing = ops.find_version_by_semver(self.client, self.model_name, version.version_string)
        tags = metadata_tags(version)
        if version.mlflow_run_id or (version.model_path or "").startswith("runs:/"):
            run_id = version.mlflow_run_id or (version.model_path or "").removeprefix("runs:/").split("/", 1)[0]
            if existing is not None and existing.run_id != run_id:
                raise ValueError(
                    f"{self.model_name} {version.version_string} is already registry version "
                    f"{existing.version} from run {existing.run_id}"
                )
            run = self._run(run_id)
            if run is None:
                raise ValueError(f"run {run_id} does not exist")
            mv = ops.register_run_model(self.client, self.model_name, run, tags)
        elif (version.model_path or "").startswith("models:/m-"):
            if existing is not None:
                raise ValueError(
                    f"{self.model_name} {version.version_string} is already registry version {existing.version}"
                )
            model_id = (version.model_path or "").removeprefix("models:/")
            with translate_errors("register_version"):
                ops._create_registered_model(self.client, self.model_name)
                mv = self.client.create_model_version(
                    self.model_name, source=f"models:/{model_id}", tags=tags, model_id=model_id
                )
        else:
            raise ValueError("register_version needs mlflow_run_id or a runs:/ or models:/m-… model_path")
        number = str(mv.version)
        ops.transition_stage(self.client, self.model_name, number, version.stage, archive_existing=True)
        return version.model_copy(update={"registry_version": number, "mlflow_run_id": mv.run_id})

    # -- decisions ---------------------------------------------------------------------------

    def should_promote(
        self,
        new_version: ModelVersionMetadata,
        current_version: ModelVersionMetadata | None = None,
        metric_name: str = "accuracy",
        improvement_threshold: float = 0.01,
        *,
        mode: ImprovementMode = "absolute",
        direction: Direction | None = None,
        min_value: float | None = None,
    ) -> tuple[bool, str]:
        """Whether ``new_version`` should replace ``current_version`` (default: the Production version).

        ``improvement_threshold`` is the required gain in ``metric_name`` (absolute units by
        default, e.g. 0.01 = one accuracy point; ``mode="relative"`` for a fraction). Lower-is-better
        metrics (rmse, mae, *time*) are detected. Returns ``(passed, reason)`` with both values in
        the reason; see :func:`modelops.registry.gate.evaluate_gate`.
        """
        current = current_version if current_version is not None else self.get_production_version()
        if current is not None and current.version_string == new_version.version_string:
            return False, f"{new_version.version_string} is already the current version"
        incumbent = current.metrics.get(metric_name) if current else None
        result = evaluate_gate(
            new_version.metrics.get(metric_name),
            metric=metric_name,
            min_value=min_value,
            incumbent_value=None if incumbent is None or math.isnan(incumbent) else incumbent,
            incumbent_version=current.version_string if current else None,
            min_improvement=improvement_threshold,
            mode=mode,
            direction=direction,
        )
        return result.passed, result.reason

    def auto_version(self, change_type: ChangeType = "patch") -> str:
        """The next semantic version: the highest registered one bumped by ``change_type`` (major/minor/patch).

        With nothing registered the bump starts from 0.0.0 (major → 1.0.0). Does not register anything.
        """
        return bump_version(ops.highest_semver(self.client, self.model_name), change_type)
