"""The MLflow registry library: the original document's Python API on MLflow 3, without kopf.

Usable from a notebook; the operator and the runtime are thin layers on it.

* :mod:`.mlflow_config` — ``MlflowConfig`` / ``get_mlflow_config()``: setup, runs, registration,
  stage transitions with aliases and tags.
* :mod:`.versioning` — ``create_model_version``, ``ModelVersionManager`` backed by registry tags.
* :mod:`.gate` — ``evaluate_gate``, the promotion gate shared with the operator.
* :mod:`.operations` — idempotent sync functions the operator runs off its event loop.
* :mod:`.models` — ``load_model`` for skops-serialised scikit-learn models under a trusted-types policy.
* :mod:`.errors` — ``RegistryUnavailable``, ``ModelOwnedElsewhere`` and friends.
"""

from .errors import (
    LoggedModelNotFound,
    ModelOwnedElsewhere,
    ModelVersionNotFound,
    RegistryError,
    RegistryUnavailable,
    UntrustedModel,
)
from .gate import GateResult, evaluate_gate, infer_direction
from .mlflow_config import MlflowConfig, get_mlflow_config, initialize_mlflow
from .models import load_model
from .semantic import bump_version, max_semver, parse_semver
from .versioning import ModelVersionManager, ModelVersionMetadata, create_model_version

__all__ = [
    "GateResult",
    "LoggedModelNotFound",
    "MlflowConfig",
    "ModelOwnedElsewhere",
    "ModelVersionManager",
    "ModelVersionMetadata",
    "ModelVersionNotFound",
    "RegistryError",
    "RegistryUnavailable",
    "UntrustedModel",
    "bump_version",
    "create_model_version",
    "evaluate_gate",
    "get_mlflow_config",
    "infer_direction",
    "initialize_mlflow",
    "load_model",
    "max_semver",
    "parse_semver",
]
