"""Saving and loading scikit-learn models with skops under *our* trusted-types policy.

MLflow 3 saves scikit-learn models with skops, which refuses to rebuild types that are not
explicitly trusted. MLflow itself reads the trusted list from the model's own ``MLmodel`` file
(so a crafted model can trust anything) and therefore gates every load behind
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``. :func:`load_model` does not use that path: it downloads
the model, asks skops which types it would have to trust, and loads it only when each of those
is allowed by :data:`DEFAULT_TRUSTED_PREFIXES` (or the caller's list). Pickle/cloudpickle models
are refused.

The training runtime calls :func:`trusted_types_for` before ``mlflow.sklearn.log_model`` so the
same policy holds on both sides.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.models import Model

from .errors import UntrustedModel, translate_errors

#: Type-name prefixes a model may need beyond skops' defaults: scikit-learn internals (e.g. the
#: ``sklearn.tree._tree.Tree`` of a forest), numpy dtypes and scipy sparse matrices.
DEFAULT_TRUSTED_PREFIXES: tuple[str, ...] = ("sklearn.", "numpy.dtype", "numpy.random.", "scipy.sparse.")
SKOPS_FORMAT = "skops"


def _allowed(type_name: str, prefixes: Sequence[str]) -> bool:
    return any(type_name == p or type_name.startswith(p) for p in prefixes)


def check_trusted(untrusted: Sequence[str], prefixes: Sequence[str] = DEFAULT_TRUSTED_PREFIXES) -> list[str]:
    """Return ``untrusted`` (skops' list for a model) when every entry is allowed by ``prefixes``.

    Raises :class:`UntrustedModel` naming the types outside the policy.
    """
    refused = sorted(t for t in untrusted if not _allowed(t, prefixes))
    if refused:
        raise UntrustedModel(f"model needs types outside the trusted set {list(prefixes)}: {', '.join(refused)}")
    return sorted(untrusted)


@dataclass(frozen=True)
class SkopsInfo:
    """What skops reports about a fitted estimator: serialised size and the extra types to trust."""

    size_bytes: int
    trusted_types: list[str]


def trusted_types_for(estimator: Any, prefixes: Sequence[str] = DEFAULT_TRUSTED_PREFIXES) -> SkopsInfo:
    """Serialise ``estimator`` with skops in memory; return its size (bytes) and the types it needs trusted.

    Pass ``trusted_types`` as ``skops_trusted_types`` to ``mlflow.sklearn.log_model``. Raises
    :class:`UntrustedModel` when a type falls outside ``prefixes`` (e.g. a custom function).

    ``log_model`` serialises the model again: MLflow needs the list before it dumps (it trial-loads
    its file with it). The extra pass here costs ~0.01 s for a logistic regression and ~0.2 s for a
    100-tree forest; the first ``import skops.io`` (~0.3 to 1 s, see the training runtime's
    ``import_training_stack``) is paid once per process whichever call makes it.
    """
    import skops.io  # runtime extra; imported here so the operator does not need it

    data = skops.io.dumps(estimator)
    return SkopsInfo(len(data), check_trusted(skops.io.get_untrusted_types(data=data), prefixes))


def load_model(
    model_uri: str,
    *,
    trusted_prefixes: Sequence[str] = DEFAULT_TRUSTED_PREFIXES,
    dst_path: str | None = None,
) -> Any:
    """Load a scikit-learn model logged with skops, e.g. ``models:/<name>/<version>`` or ``runs:/<run>/model``.

    Args:
        model_uri: any MLflow model URI (``models:/``, ``runs:/``, a local directory with ``MLmodel``).
        trusted_prefixes: type-name prefixes the model may need (see :data:`DEFAULT_TRUSTED_PREFIXES`).
        dst_path: existing directory to download into; a temporary one (removed afterwards) when None.

    Returns:
        The fitted estimator (for models trained by modelops, a ``sklearn.pipeline.Pipeline`` that
        takes the raw feature frame).

    Raises:
        UntrustedModel: not a skops-serialised sklearn model, or it needs untrusted types.
        RegistryUnavailable: MLflow unreachable.
        mlflow.exceptions.MlflowException: the model does not exist (``RESOURCE_DOES_NOT_EXIST``).
    """
    if dst_path is not None:
        return _load_from(model_uri, dst_path, trusted_prefixes)
    with tempfile.TemporaryDirectory(prefix="modelops-model-") as tmp:
        return _load_from(model_uri, tmp, trusted_prefixes)


def _load_from(model_uri: str, dst_path: str, prefixes: Sequence[str]) -> Any:
    """Download ``model_uri`` into ``dst_path`` and load its skops file under the policy."""
    if os.path.isdir(model_uri):
        local = model_uri
    else:
        with translate_errors("load_model"):
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst_path)
    flavor = Model.load(local).flavors.get("sklearn")
    if flavor is None:
        raise UntrustedModel(f"{model_uri} is not a scikit-learn model (no sklearn flavor in MLmodel)")
    fmt = flavor.get("serialization_format")
    if fmt != SKOPS_FORMAT:
        raise UntrustedModel(f"{model_uri} is serialised with {fmt!r}; only skops models are loaded")
    import skops.io  # runtime extra; imported here so the operator does not need it

    path = os.path.join(local, flavor["pickled_model"])
    trusted = check_trusted(skops.io.get_untrusted_types(file=path), prefixes)
    return skops.io.load(path, trusted=trusted)
