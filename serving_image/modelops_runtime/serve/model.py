"""The served model: loading it from MLflow once, checking it, warming it up, and predicting.

Loading (:func:`load_served_model`): download ``models:/<name>/<n>`` → read ``MLmodel`` (signature,
the scikit-learn version it was saved with, the input example) → refuse when the installed
scikit-learn differs (the exact version by default; major.minor with ``framework_version_match:
minor``) → load the estimator under the registry library's skops policy → warm up with a
prediction. :class:`ModelState` holds the outcome for the readiness endpoints;
:class:`ModelLoader` runs the load off the event loop and retries while MLflow is unreachable.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import sklearn
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from packaging.version import InvalidVersion, Version
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from modelops.contract import REFUSAL_FRAMEWORK_VERSION, REFUSAL_INCOMPATIBLE, REFUSAL_UNTRUSTED
from modelops.registry.errors import RegistryUnavailable, UntrustedModel
from modelops.registry.models import load_model

from .errors import RejectedByModel
from .protocol import OUTPUT_PREDICT, OUTPUT_PROBA, Prediction
from .schema import ColumnSpec, InputSchema

log = logging.getLogger(__name__)

#: Final estimators whose ``predict`` is, by construction, the class of highest ``predict_proba``
#: (scikit-learn computes it that way, or via the same monotone score). For these one
#: ``predict_proba`` call gives both outputs, halving the model time per request. For
#: LogisticRegression the two can differ only for a probability of exactly 0.5 (a tie), where we
#: return the first class, consistent with the probability we return. Subclasses are excluded
#: (they may override ``predict``); the equivalence is also checked at warm-up.
ARGMAX_CLASSIFIERS: frozenset[type] = frozenset(
    {
        LogisticRegression,
        RandomForestClassifier,
        ExtraTreesClassifier,
        DecisionTreeClassifier,
        ExtraTreeClassifier,
        HistGradientBoostingClassifier,
        GaussianNB,
    }
)
#: Exceptions scikit-learn raises for input it cannot use (mapped to HTTP 400).
MODEL_INPUT_ERRORS = (ValueError, TypeError)
#: What a model that cannot run on an input may raise while we probe it at warm-up.
_PROBE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)


class IncompatibleModel(Exception):
    """The model can never be served by this server (retrying would not help); the message says why.

    ``reason`` is one of :data:`modelops.contract.REFUSAL_REASONS` (the word the ModelVersion's
    ``Serving`` condition carries).
    """

    def __init__(self, message: str, reason: str = REFUSAL_INCOMPATIBLE) -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class ModelMetadata:
    """What the server needs from a downloaded model's ``MLmodel`` file.

    Attributes:
        local_path: directory of the downloaded model.
        schema: input columns (estimator order).
        sklearn_version: scikit-learn version the model was saved with.
        input_example: the logged input example, if any.
        mlflow_version, run_id: provenance (metadata endpoint).
    """

    local_path: str
    schema: InputSchema
    sklearn_version: str
    input_example: pd.DataFrame | None
    mlflow_version: str | None
    run_id: str | None


def read_metadata(local_path: str) -> ModelMetadata:
    """Read a downloaded model's signature, scikit-learn version and input example.

    Raises:
        IncompatibleModel: no sklearn flavor, no (column) signature, unsupported column types, or
            no recorded scikit-learn version.
    """
    model = read_mlmodel(local_path)
    flavor = model.flavors.get("sklearn")
    if flavor is None:
        raise IncompatibleModel("the model has no sklearn flavor; only scikit-learn models are served")
    trained = flavor.get("sklearn_version")
    if not trained:
        raise IncompatibleModel("the model does not record the scikit-learn version it was saved with")
    signature = model.signature
    if signature is None or signature.inputs is None:
        raise IncompatibleModel(
            "the model has no input signature; log it with one (mlflow.models.infer_signature) so that "
            "inputs can be matched by column name"
        )
    if signature.inputs.is_tensor_spec():
        raise IncompatibleModel("the model's signature is tensor-based; a column signature is required")
    columns = []
    for col in signature.inputs.inputs:
        if not col.name:
            raise IncompatibleModel("the model's signature has unnamed columns; inputs are matched by name")
        kind = getattr(col.type, "name", str(col.type))
        columns.append(ColumnSpec(col.name, kind, bool(getattr(col, "required", True))))
    try:
        schema = InputSchema(columns)
    except ValueError as exc:
        raise IncompatibleModel(str(exc)) from None
    example = None
    if model.saved_input_example_info is not None:
        loaded = model.load_input_example(local_path)
        if isinstance(loaded, pd.DataFrame):
            example = loaded
    return ModelMetadata(local_path, schema, str(trained), example, model.mlflow_version, model.run_id)


#: What reading a corrupt MLmodel file raises (yaml errors are ValueErrors' siblings, listed explicitly).
_MLMODEL_ERRORS = (yaml.YAMLError, OSError, ValueError, TypeError, AttributeError, KeyError, MlflowException)


def read_mlmodel(local_path: str) -> Model:
    """The downloaded model's ``MLmodel`` file, parsed.

    Raises:
        IncompatibleModel: the file is missing, empty or unreadable (not YAML, not a mapping of
            flavors): final, the download succeeded, so retrying cannot help.
    """
    try:
        model = Model.load(local_path)
        if not isinstance(model.flavors, dict) or not all(isinstance(f, dict) for f in model.flavors.values()):
            raise TypeError("'flavors' is not a mapping of flavor name to settings")
    except _MLMODEL_ERRORS as exc:
        raise IncompatibleModel(
            f"the model's MLmodel file is missing, empty or unreadable: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    return model


def check_sklearn_version(trained: str, installed: str = sklearn.__version__, match: str = "exact") -> None:
    """Refuse a model saved with another scikit-learn than the installed one.

    ``match``: ``exact`` (the default: any difference, a patch release included, since scikit-learn
    guarantees nothing across versions and warns ``InconsistentVersionWarning``) or ``minor``
    (major.minor only, the explicit opt-out).

    Raises:
        IncompatibleModel: reason ``FrameworkVersionMismatch``, when the versions differ (or the
            recorded one cannot be parsed).
    """
    try:
        trained_v = Version(trained)
    except InvalidVersion:
        raise IncompatibleModel(
            f"the model records an unparsable scikit-learn version {trained!r}", REFUSAL_FRAMEWORK_VERSION
        ) from None
    installed_v = Version(installed)
    if match == "minor":
        if trained_v.release[:2] == installed_v.release[:2]:
            return
        wanted, rule = f"{'.'.join(map(str, trained_v.release[:2]))}.x", "major.minor must match"
    else:
        if trained_v == installed_v:
            return
        wanted, rule = str(trained_v), "the exact version must match (framework version match: exact)"
    raise IncompatibleModel(
        f"scikit-learn version mismatch: the model was saved with {trained}, the server runs {installed} "
        f"({rule}); serve it with an image that has scikit-learn {wanted} or retrain it",
        REFUSAL_FRAMEWORK_VERSION,
    )


def load_estimator(local_path: str) -> Any:
    """Load the fitted estimator from a downloaded model directory (the one place that does it).

    Uses the registry library's skops loader (trusted-types policy; pickle is refused).

    Raises:
        IncompatibleModel: the model is not skops-serialised or needs untrusted types.
    """
    try:
        return load_model(local_path)
    except UntrustedModel as exc:
        raise IncompatibleModel(str(exc), REFUSAL_UNTRUSTED) from None


# ------------------------------------------------------------------------------------ model


class ServedModel:
    """A loaded estimator with its schema, and the fast predict path chosen at warm-up.

    Args:
        estimator: fitted scikit-learn estimator or pipeline taking the raw feature frame.
        schema: its input columns.
    """

    def __init__(self, estimator: Any, schema: InputSchema) -> None:
        self.estimator = estimator
        self.schema = schema
        classes = getattr(estimator, "classes_", None)
        self.classes: np.ndarray | None = None if classes is None else np.asarray(classes)
        self.classes_list: list[Any] | None = None if self.classes is None else self.classes.tolist()
        self.has_proba = self.classes is not None and hasattr(estimator, "predict_proba")
        final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
        self.final_estimator = final
        self.proba_decides = self.has_proba and type(final) in ARGMAX_CLASSIFIERS
        self.accepts_matrix = False
        self.outputs = [OUTPUT_PREDICT, OUTPUT_PROBA] if self.has_proba else [OUTPUT_PREDICT]

    def predict(self, batch: Any, want_proba: bool = True) -> Prediction:
        """Predict a :class:`~.schema.Batch`.

        Args:
            want_proba: compute class probabilities (always done when they decide the class).

        Returns:
            ``predict`` of shape ``(n,)`` and, for classifiers with ``predict_proba``, ``proba`` of
            shape ``(n, n_classes)`` (None otherwise or when not wanted).

        Raises:
            RejectedByModel: the estimator raised ValueError/TypeError (e.g. NaN given to a model
                without an imputer).
        """
        features = batch.as_matrix() if self.accepts_matrix else batch.frame()
        try:
            return self._predict(features, want_proba)
        except MODEL_INPUT_ERRORS as exc:
            raise RejectedByModel(f"the model rejected the input: {exc}") from None

    def _predict(self, features: Any, want_proba: bool) -> Prediction:
        if self.proba_decides:
            assert self.classes is not None
            proba = self.estimator.predict_proba(features)
            return Prediction(self.classes[proba.argmax(axis=1)], proba)
        pred = np.asarray(self.estimator.predict(features))
        proba = self.estimator.predict_proba(features) if want_proba and self.has_proba else None
        return Prediction(pred, proba)

    def warm_up(self, batch: Any, *, trusted_example: bool) -> None:
        """Predict once (paying first-call costs) and choose the fast paths, checking each on ``batch``.

        * ``proba_decides`` stays on only if argmax(predict_proba) equals ``predict`` on the batch;
        * ``accepts_matrix`` (pass a float64 ndarray in the fitted column order instead of a
          DataFrame; scikit-learn validates a DataFrame several times slower) is turned on only for
          all-numeric schemas whose estimator gives identical outputs for both.

        Args:
            trusted_example: the batch is the model's own input example; a failure then means the
                model cannot serve at all.

        Raises:
            IncompatibleModel: the model fails on its own input example.
        """
        frame = batch.frame()
        try:
            reference = self._reference(frame)
        except _PROBE_ERRORS as exc:
            if trusted_example:
                raise IncompatibleModel(f"warm-up prediction on the model's input example failed: {exc}") from None
            log.warning("warm-up prediction on a synthetic row failed (%s); fast paths stay off", exc)
            self.proba_decides = False
            return
        if self.proba_decides:
            assert reference.proba is not None and self.classes is not None
            if not np.array_equal(self.classes[reference.proba.argmax(axis=1)], reference.predict):
                log.warning("argmax(predict_proba) differs from predict on the warm-up rows; calling both")
                self.proba_decides = False
        if self.schema.numeric:
            self.accepts_matrix = self._matrix_equivalent(batch.as_matrix(), reference)
        log.info(
            "model warmed up: classes=%s proba=%s proba_decides=%s ndarray_input=%s",
            self.classes_list,
            self.has_proba,
            self.proba_decides,
            self.accepts_matrix,
        )

    def _reference(self, frame: pd.DataFrame) -> Prediction:
        pred = np.asarray(self.estimator.predict(frame))
        proba = self.estimator.predict_proba(frame) if self.has_proba else None
        return Prediction(pred, proba)

    def _matrix_equivalent(self, matrix: np.ndarray, reference: Prediction) -> bool:
        # An estimator fitted on a DataFrame warns when given an ndarray; the columns are in the
        # fitted order, so the warning does not apply to this server. Filter it process-wide
        # (catch_warnings is not thread-safe and costs more than the warning itself).
        warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
        try:
            pred = np.asarray(self.estimator.predict(matrix))
            proba = self.estimator.predict_proba(matrix) if self.has_proba else None
        except _PROBE_ERRORS as exc:
            log.info("the estimator does not take an ndarray (%s); using DataFrames", exc)
            return False
        if not np.array_equal(pred, reference.predict):
            return False
        if proba is not None and reference.proba is not None:
            return bool(np.allclose(proba, reference.proba, rtol=0, atol=1e-12))
        return True


def example_batch(schema: InputSchema, example: pd.DataFrame | None) -> tuple[Any, bool]:
    """The warm-up batch: the model's input example when logged, else one synthetic row.

    Returns:
        (batch, whether it is the model's own example).
    """
    if example is not None and set(schema.required) <= set(example.columns) <= set(schema.names):
        data = {name: [_py(v) for v in example[name].tolist()] for name in example.columns}
        return schema.from_columns(data), True
    synthetic: dict[str, list[Any]] = {}
    for col in schema.columns:
        if col.kind == "string":
            synthetic[col.name] = [None]
        elif col.kind == "boolean":
            synthetic[col.name] = [False]
        else:
            synthetic[col.name] = [0]
    return schema.from_columns(synthetic), False


def _py(value: Any) -> Any:
    """A pandas/numpy scalar as a plain JSON-like Python value (NaN → None)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return _py(value.item())
    return value


@dataclass
class LoadedModel:
    """A model ready to serve."""

    model: ServedModel
    metadata: ModelMetadata


def load_served_model(uri: str, dst_path: str | None = None, framework_match: str = "exact") -> LoadedModel:
    """Download, check, load and warm up the model at ``uri`` (e.g. ``models:/<name>/<n>``).

    ``framework_match``: see :func:`check_sklearn_version`.

    Raises:
        IncompatibleModel: the model cannot be served (version mismatch, no signature, …).
        RegistryUnavailable, MlflowException, OSError: MLflow or the artifact store failed (retryable).
    """
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst_path)
    metadata = read_metadata(local)
    check_sklearn_version(metadata.sklearn_version, match=framework_match)
    model = ServedModel(load_estimator(local), metadata.schema)
    batch, trusted = example_batch(metadata.schema, metadata.input_example)
    model.warm_up(batch, trusted_example=trusted)
    return LoadedModel(model, metadata)


# -------------------------------------------------------------------------------- lifecycle


class ModelState:
    """Where loading stands, read by the health endpoints (attribute writes are atomic).

    ``phase`` is ``loading`` (retrying included), ``ready``, ``refused`` (never servable, reason
    says why; ``refusal`` is the :class:`IncompatibleModel`) or ``crashed`` (the loader died on an
    unexpected error: liveness fails so the pod restarts).
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.phase = "loading"
        self.reason = f"loading {uri}"
        self.loaded: LoadedModel | None = None
        self.refusal: IncompatibleModel | None = None

    @property
    def ready(self) -> bool:
        """True once the model is loaded and warmed up."""
        return self.loaded is not None

    @property
    def live(self) -> bool:
        """False only when the loader crashed."""
        return self.phase != "crashed"


class ModelLoader:
    """Loads the model in a background thread and records the outcome in a :class:`ModelState`.

    MLflow/artifact-store failures are retried with exponential backoff (``min_delay`` doubling up
    to ``max_delay`` seconds), since MLflow may come up after the server; an
    :class:`IncompatibleModel` is final. ``on_ready`` runs in the loader thread after success,
    ``on_refused`` after a refusal (the process entry point writes the termination message).
    """

    RETRYABLE = (RegistryUnavailable, MlflowException, OSError)

    def __init__(
        self,
        state: ModelState,
        *,
        load: Callable[[str], LoadedModel] = load_served_model,
        on_ready: Callable[[LoadedModel], None] | None = None,
        on_refused: Callable[[IncompatibleModel], None] | None = None,
        min_delay: float = 1.0,
        max_delay: float = 30.0,
    ) -> None:
        self.state = state
        self._load = load
        self._on_ready = on_ready
        self.on_refused = on_refused
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-loader", daemon=True)
        self._started = False

    def start(self) -> None:
        """Start loading in a background thread (nothing when a load already started or ran)."""
        if not self._started:
            self._started = True
            self._thread.start()

    def run(self) -> None:
        """Load in the calling thread, until ready, refused, crashed or stopped (retrying meanwhile).

        A later :meth:`start` does nothing (a worker that loads before it accepts connections).
        """
        self._started = True
        self._run()

    def stop(self) -> None:
        """Stop retrying (a load in progress finishes in the background)."""
        self._stop.set()

    def _run(self) -> None:
        state = self.state
        delay = self._min_delay
        attempt = 0
        try:
            while not self._stop.is_set():
                attempt += 1
                try:
                    loaded = self._load(state.uri)
                except IncompatibleModel as exc:
                    state.refusal = exc
                    state.phase, state.reason = "refused", f"model {state.uri} cannot be served ({exc.reason}): {exc}"
                    log.error("%s (%s)", state.reason, exc.reason)
                    if self.on_refused is not None:
                        self.on_refused(exc)
                    return
                except self.RETRYABLE as exc:
                    state.reason = (
                        f"loading {state.uri} failed (attempt {attempt}), retrying in {delay:.0f}s: "
                        f"{type(exc).__name__}: {_first_line(exc)}"
                    )
                    log.warning(state.reason)
                    self._stop.wait(delay)
                    delay = min(delay * 2, self._max_delay)
                    continue
                if self._on_ready is not None:
                    self._on_ready(loaded)
                state.loaded = loaded
                state.phase, state.reason = "ready", f"serving {state.uri}"
                log.info("model %s is ready", state.uri)
                return
        finally:
            if state.phase == "loading" and not self._stop.is_set():
                state.phase = "crashed"
                state.reason = f"the model loader crashed while loading {state.uri}; see the server log"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
