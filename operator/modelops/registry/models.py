"""Saving and loading scikit-learn models with skops under *our* trusted-types policy.

MLflow 3 saves scikit-learn models with skops, which refuses to rebuild types that are not
explicitly trusted. MLflow itself reads the trusted list from the model's own ``MLmodel`` file
(so a crafted model can trust anything) and therefore gates every load behind
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``. :func:`load_model` does not use that path: it downloads
the model, asks skops which types beyond its defaults the file would make it rebuild, and loads
it only when each one passes :func:`check_trusted`. Pickle/cloudpickle models are refused.

The policy is by kind, not by name prefix: a type is trusted only when it is a *class* from
scikit-learn, numpy or scipy (outside their test helpers) that derives from one of
:data:`TRUSTED_BASES`: estimators and transformers, the state classes fitted estimators hold
(trees, neighbour trees, distance metrics, kernels, losses, optimisers), numpy dtypes, scalars
and random generators, scipy sparse containers. A function (even ``sklearn.*``) is never
trusted: skops would hand it to the model, which calls it. skops' own defaults (estimators, numpy
and scipy ufuncs, builtin containers) are not reported as untrusted and need nothing here.

The training runtime calls :func:`trusted_types_for` before ``mlflow.sklearn.log_model`` so the
same policy holds on both sides.
"""

from __future__ import annotations

import importlib
import inspect
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.models import Model

from .errors import UntrustedModel, translate_errors

#: Base classes (dotted names) whose subclasses a model may need rebuilt. Names missing from the
#: installed versions are skipped (private modules move between releases).
TRUSTED_BASES: tuple[str, ...] = (
    "sklearn.base.BaseEstimator",  # estimators and transformers (also private ones, e.g. _SigmoidCalibration)
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._binary_tree.BinaryTree64",
    "sklearn.neighbors._kd_tree.BinaryTree64",
    "sklearn.neighbors._kd_tree.BinaryTree32",
    "sklearn.neighbors._ball_tree.BinaryTree64",
    "sklearn.neighbors._ball_tree.BinaryTree32",
    "sklearn.metrics._dist_metrics.DistanceMetric",
    "sklearn.gaussian_process.kernels.Kernel",
    "sklearn._loss.loss.BaseLoss",
    "sklearn._loss.link.BaseLink",
    "sklearn.neural_network._stochastic_optimizers.BaseOptimizer",
    "numpy.dtype",
    "numpy.generic",
    "numpy.random.BitGenerator",
    "numpy.random.RandomState",
    "numpy.random.Generator",
    "scipy.sparse._base._spbase",
)
#: Packages trusted types may come from, and modules inside them that are never trusted.
TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")
UNTRUSTED_MODULE_PARTS = ("tests", "_testing", "testing", "estimator_checks", "conftest", "_mocking")
SKOPS_FORMAT = "skops"


def _resolve(name: str) -> Any:
    """The object a skops type name (``module.Qualified.Name``) names, importing only modules of
    :data:`TRUSTED_PACKAGES`; raises LookupError when it cannot be found."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                raise LookupError(name)
        return obj
    raise LookupError(name)


def _bases(names: Sequence[str]) -> tuple[type, ...]:
    found = []
    for dotted in names:
        try:
            obj = _resolve(dotted)
        except LookupError:
            continue
        if inspect.isclass(obj):
            found.append(obj)
    return tuple(found)


def refusal(type_name: str, bases: Sequence[str] = TRUSTED_BASES) -> str | None:
    """Why ``type_name`` (a name skops reports) is not trusted, or None when it is.

    Nothing outside scikit-learn, numpy and scipy is imported to find out.
    """
    parts = type_name.split(".")
    if parts[0] not in TRUSTED_PACKAGES:
        return f"{type_name} (outside {', '.join(TRUSTED_PACKAGES)})"
    if any(part in UNTRUSTED_MODULE_PARTS for part in parts[:-1]):
        return f"{type_name} (a test helper module)"
    try:
        obj = _resolve(type_name)
    except LookupError:
        return f"{type_name} (not found in the installed packages)"
    if not inspect.isclass(obj):
        return f"{type_name} (a {type(obj).__name__}, not a class: the model would call it)"
    if not issubclass(obj, _bases(bases)):
        return f"{type_name} (not an estimator, transformer, model-state, numpy or scipy data type)"
    return None


def check_trusted(untrusted: Sequence[str], bases: Sequence[str] = TRUSTED_BASES) -> list[str]:
    """Return ``untrusted`` (skops' list for a model, sorted) when every entry passes :func:`refusal`.

    Raises :class:`UntrustedModel` naming each refused type and why.
    """
    refused = [reason for name in sorted(untrusted) if (reason := refusal(name, bases)) is not None]
    if refused:
        raise UntrustedModel(f"model needs types outside the trusted set: {'; '.join(refused)}")
    return sorted(untrusted)


@dataclass(frozen=True)
class SkopsInfo:
    """What skops reports about a fitted estimator: serialised size and the extra types to trust."""

    size_bytes: int
    trusted_types: list[str]


def trusted_types_for(estimator: Any, bases: Sequence[str] = TRUSTED_BASES) -> SkopsInfo:
    """Serialise ``estimator`` with skops in memory; return its size (bytes) and the types it needs trusted.

    Pass ``trusted_types`` as ``skops_trusted_types`` to ``mlflow.sklearn.log_model``. Raises
    :class:`UntrustedModel` when a type falls outside the policy (e.g. a function).

    ``log_model`` serialises the model again: MLflow needs the list before it dumps (it trial-loads
    its file with it). The extra pass here costs ~0.01 s for a logistic regression and ~0.2 s for a
    100-tree forest; the first ``import skops.io`` (~0.3 to 1 s, see the training runtime's
    ``import_training_stack``) is paid once per process whichever call makes it.
    """
    import skops.io  # runtime extra; imported here so the operator does not need it

    data = skops.io.dumps(estimator)
    return SkopsInfo(len(data), check_trusted(skops.io.get_untrusted_types(data=data), bases))


def load_model(
    model_uri: str,
    *,
    trusted_bases: Sequence[str] = TRUSTED_BASES,
    dst_path: str | None = None,
) -> Any:
    """Load a scikit-learn model logged with skops, e.g. ``models:/<name>/<version>`` or ``runs:/<run>/model``.

    Args:
        model_uri: any MLflow model URI (``models:/``, ``runs:/``, a local directory with ``MLmodel``).
        trusted_bases: base classes the types a model needs must derive from (see :data:`TRUSTED_BASES`).
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
        return _load_from(model_uri, dst_path, trusted_bases)
    with tempfile.TemporaryDirectory(prefix="modelops-model-") as tmp:
        return _load_from(model_uri, tmp, trusted_bases)


def _load_from(model_uri: str, dst_path: str, bases: Sequence[str]) -> Any:
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
    # Checked before skops rebuilds anything: nothing of the file is constructed or called first.
    trusted = check_trusted(skops.io.get_untrusted_types(file=path), bases)
    return skops.io.load(path, trusted=trusted)
