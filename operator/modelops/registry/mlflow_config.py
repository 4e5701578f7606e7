"""The original document's MLflow configuration object (``ml/mlflow_config.py``), on MLflow 3.

``get_mlflow_config()`` returns one :class:`MlflowConfig` built from the environment:

=============================  ==============================================  ==========================
variable                       meaning                                         default
=============================  ==============================================  ==========================
``MLFLOW_TRACKING_URI``        tracking server or store                        ``MLFLOW_BACKEND_STORE_URI``
``MLFLOW_BACKEND_STORE_URI``   local store used when no tracking URI is set    ``sqlite:///mlruns/mlflow.db``
``MLFLOW_REGISTRY_URI``        model registry, when not the tracking server    the tracking URI
``MLFLOW_ARTIFACT_LOCATION``   artifact root of experiments created here       ``mlruns/artifacts`` for a
                                                                               local store, else the server's
``MLFLOW_EXPERIMENT_NAME``     default experiment of :meth:`start_run`         ``model-training``
``MLFLOW_MODEL_NAME``          default registered model name                   ``future-skills-model``
=============================  ==============================================  ==========================

The document's default tracking URI ``file://mlruns`` is replaced by its own backend default
``sqlite:///mlruns/mlflow.db``: MLflow 3 deprecates the file store, and the SQL store supports
everything used here (aliases, logged models). Stage transitions use aliases and tags, see
:func:`modelops.registry.operations.transition_stage` and ``docs/registry.md``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking.fluent import ActiveRun

from ..api.modelversion import STAGE_ALIASES
from ..contract import EXPERIMENT_EVALUATION, EXPERIMENT_MONITORING, EXPERIMENT_TRAINING
from . import operations as ops
from .errors import ModelVersionNotFound, translate_errors

DEFAULT_BACKEND_STORE_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACT_LOCATION = "mlruns/artifacts"
DEFAULT_MODEL_NAME = "future-skills-model"
#: Experiments of the original document (the first is its default one for predictions).
DEFAULT_EXPERIMENTS = ("future-skills-prediction", EXPERIMENT_TRAINING, EXPERIMENT_EVALUATION, EXPERIMENT_MONITORING)


def _is_local_store(uri: str) -> bool:
    """True for stores on this machine (sqlite, file paths), where artifact roots are local directories."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    return scheme in ("", "sqlite", "file") or len(scheme) == 1  # "" or a Windows drive letter


@dataclass
class MlflowConfig:
    """MLflow settings plus the document's operations: setup, runs, registration, stages.

    Build it with :meth:`from_env` or :func:`get_mlflow_config`. Methods do blocking I/O and raise
    :class:`~modelops.registry.errors.RegistryUnavailable` when the server cannot be reached.
    """

    tracking_uri: str = DEFAULT_BACKEND_STORE_URI
    registry_uri: str | None = None
    artifact_location: str | None = None
    default_experiment: str = EXPERIMENT_TRAINING
    default_model_name: str = DEFAULT_MODEL_NAME
    experiments: tuple[str, ...] = DEFAULT_EXPERIMENTS
    _client: MlflowClient | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MlflowConfig:
        """Read the variables in the module docstring from ``env`` (default ``os.environ``)."""
        env = os.environ if env is None else env
        tracking = env.get("MLFLOW_TRACKING_URI") or env.get("MLFLOW_BACKEND_STORE_URI") or DEFAULT_BACKEND_STORE_URI
        artifacts = env.get("MLFLOW_ARTIFACT_LOCATION") or (
            DEFAULT_ARTIFACT_LOCATION if _is_local_store(tracking) else None
        )
        return cls(
            tracking_uri=tracking,
            registry_uri=env.get("MLFLOW_REGISTRY_URI") or None,
            artifact_location=artifacts,
            default_experiment=env.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT_TRAINING,
            default_model_name=env.get("MLFLOW_MODEL_NAME") or DEFAULT_MODEL_NAME,
        )

    @property
    def client(self) -> MlflowClient:
        """An ``MlflowClient`` bound to this configuration's URIs (created once)."""
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        return self._client

    def _artifact_root(self, experiment: str) -> str | None:
        """Artifact location for a new experiment: ``<artifact_location>/<experiment>`` (absolute URI if local)."""
        if not self.artifact_location:
            return None
        base = self.artifact_location
        if "://" not in base:
            return (Path(base).resolve() / experiment).as_uri()
        return f"{base.rstrip('/')}/{experiment}"

    def setup(self) -> None:
        """Point the ``mlflow`` module at this configuration and create the experiments that are missing.

        Creates the directory of a local sqlite store. Idempotent.
        """
        if self.tracking_uri.startswith("sqlite:///"):
            db_path = Path(self.tracking_uri.removeprefix("sqlite:///"))
            db_path.parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        if self.registry_uri:
            mlflow.set_registry_uri(self.registry_uri)
        for name in dict.fromkeys((*self.experiments, self.default_experiment)):
            self.ensure_experiment(name)

    def ensure_experiment(self, name: str) -> str:
        """The id of experiment ``name``, created (with this config's artifact root) when missing."""
        with translate_errors("ensure_experiment"):
            existing = self.client.get_experiment_by_name(name)
            if existing is not None:
                return str(existing.experiment_id)
            return str(self.client.create_experiment(name, artifact_location=self._artifact_root(name)))

    @contextmanager
    def start_run(
        self,
        run_name: str | None = None,
        experiment_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        nested: bool = False,
    ) -> Iterator[ActiveRun]:
        """Start an MLflow run in ``experiment_name`` (default experiment when None), as a context manager.

        The run ends ``FINISHED``, or ``FAILED`` when the block raises (the exception propagates).
        """
        mlflow.set_tracking_uri(self.tracking_uri)
        experiment_id = self.ensure_experiment(experiment_name or self.default_experiment)
        with translate_errors("start_run"):
            active = mlflow.start_run(
                experiment_id=experiment_id, run_name=run_name, tags=dict(tags or {}), nested=nested
            )
        with active as run:
            yield run

    def register_model(
        self,
        model_uri: str,
        model_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Register ``model_uri`` (``runs:/<run>/model`` or ``models:/<model_id>``) as a new version.

        ``runs:/`` URIs go through :func:`~modelops.registry.operations.register_run_model`, so
        registering the same run twice returns the existing version instead of a duplicate.
        Other URIs are passed to ``mlflow.register_model`` (always a new version). Tag values are
        stringified. Raises ``LoggedModelNotFound`` when the run has no logged model.
        """
        name = model_name or self.default_model_name
        str_tags = {k: str(v) for k, v in (tags or {}).items()}
        if model_uri.startswith("runs:/"):
            run_id = model_uri.removeprefix("runs:/").split("/", 1)[0]
            with translate_errors("register_model"):
                run = self.client.get_run(run_id)
            version = ops.register_run_model(self.client, name, run, str_tags, description=description)
        else:
            mlflow.set_tracking_uri(self.tracking_uri)
            with translate_errors("register_model"):
                version = mlflow.register_model(model_uri, name, tags=str_tags)
        if description is not None and version.description != description:
            with translate_errors("register_model"):
                version = self.client.update_model_version(name, str(version.version), description=description)
        return version

    def transition_model_stage(
        self, model_name: str, version: str | int, stage: str, archive_existing: bool = True
    ) -> ModelVersion:
        """Move a version to Development/Staging/Production/Archived with aliases and a ``stage`` tag.

        See :func:`~modelops.registry.operations.transition_stage` for the exact semantics; never
        calls MLflow's deprecated ``transition_model_version_stage``.
        """
        return ops.transition_stage(self.client, model_name, str(version), stage, archive_existing=archive_existing)

    def get_production_model_uri(self, model_name: str | None = None, *, pinned: bool = True) -> str:
        """URI of the version holding the ``production`` alias.

        ``pinned`` (default) returns ``models:/<name>/<version>`` resolved now, so the caller keeps
        loading the same version even if the alias moves; ``pinned=False`` returns
        ``models:/<name>@production``. Raises :class:`ModelVersionNotFound` when no version is in
        Production.
        """
        name = model_name or self.default_model_name
        alias = STAGE_ALIASES["Production"]
        version = ops.get_alias(self.client, name, alias)
        if version is None:
            raise ModelVersionNotFound(f"model {name!r} has no version in Production (alias {alias!r} unset)")
        return f"models:/{name}/{version}" if pinned else f"models:/{name}@{alias}"


@lru_cache(maxsize=1)
def get_mlflow_config() -> MlflowConfig:
    """The process-wide :class:`MlflowConfig` from the environment (read once; ``cache_clear()`` to re-read)."""
    return MlflowConfig.from_env()


def initialize_mlflow() -> MlflowConfig:
    """The document's start-up hook: ``get_mlflow_config().setup()``; returns the config."""
    config = get_mlflow_config()
    config.setup()
    return config
