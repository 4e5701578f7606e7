"""What the server does per request, independent of the web framework.

:class:`InferenceService` turns request bodies into response bodies: it checks the model name and
readiness, parses (via :mod:`.protocol`), predicts, counts metrics, appends to the prediction log
and encodes. It raises :class:`~.errors.ServeError` for everything a client should hear about;
the web layer (:mod:`.app`) maps those to HTTP responses.

An infer call has two steps, so the web layer can choose where the CPU-bound part runs:
``prepare_*`` (parse and validate) and :meth:`InferenceService.run` (predict, log, encode).
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import orjson

from modelops import __version__
from modelops.contract import LOG_STATUS_OK, ServeConfig
from modelops.monitoring.prediction_log import FeatureMatrix, PredictionLogger

from .errors import MalformedBody, NotFound, NotReady, ShapeError, TooLarge
from .limits import ServeLimits
from .metrics import ServerMetrics
from .model import LoadedModel, ModelState, ServedModel
from .protocol import (
    OUTPUT_PREDICT,
    OUTPUT_PROBA,
    V2_EXTENSIONS,
    Prediction,
    check_outputs,
    encode_invocations_response,
    encode_v2_response,
    header_safe,
    parse_feedback,
    parse_invocations,
    parse_v2_infer,
    v2_datatype_of,
    v2_model_metadata,
)
from .schema import Batch
from .wire import BINARY_HEADER_LENGTH, JSON, REQUEST_ID_HEADER

#: ``status`` of prediction-log rows whose prediction failed with a server fault.
LOG_STATUS_ERROR = "error"
SERVER_NAME = "modelops"
OCTET_STREAM = "application/octet-stream"


@dataclass
class InferJob:
    """A parsed infer request, ready to run.

    Attributes:
        protocol: ``v2`` or ``mlflow`` (response encoding).
        started: ``time.perf_counter()`` when the request was received (latency metric).
        timestamp: epoch seconds of the request (prediction log).
        outputs: V2 outputs to return.
        binary_outputs: the V2 outputs to return as binary tensor data.
    """

    protocol: str
    model: ServedModel
    batch: Batch
    request_id: str
    started: float
    timestamp: float
    outputs: tuple[str, ...] = (OUTPUT_PREDICT,)
    binary_outputs: frozenset[str] = frozenset()

    @property
    def wants_proba(self) -> bool:
        """The client asked for class probabilities."""
        return OUTPUT_PROBA in self.outputs


@dataclass
class InferResult:
    """The response of a predicted request, and what metrics and the log record once it is built.

    Attributes:
        body: the response body.
        media_type: its Content-Type.
        headers: more response headers (request id; the JSON length of a binary V2 response).
        prediction: the model's output.
        seconds: server-side latency up to the encoded body.
        forwarded: answered by a rollout candidate (:mod:`.router`), which logs it; not committed here.
    """

    body: bytes
    media_type: str
    headers: dict[str, str]
    prediction: Prediction
    seconds: float
    forwarded: bool = False


class InferenceService:
    """The model server's behaviour for one served model.

    Args:
        config: the serve config (model name, versions, stage).
        state: the model's load state (filled by the loader).
        metrics: Prometheus metrics.
        logger: prediction log writer, or None when the log is off.
        limits: rows and request-id limits (defaults when None).
    """

    def __init__(
        self,
        config: ServeConfig,
        state: ModelState,
        metrics: ServerMetrics,
        logger: PredictionLogger | None,
        limits: ServeLimits | None = None,
    ) -> None:
        self.config = config
        self.limits = limits or ServeLimits()
        self.state = state
        self.metrics = metrics
        self.logger = logger
        # Generated request ids: a random per-process prefix and a counter (unique across pods and
        # restarts with overwhelming probability; no syscall per request, unlike uuid4).
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count(1)

    def on_loaded(self, loaded: LoadedModel) -> None:
        """Called once the model is ready (pre-creates the per-class counters)."""
        self.metrics.set_classes(loaded.model.classes_list)

    # ----------------------------------------------------------------------------- health

    def model_or_raise(self, name: str | None = None, version: str | None = None) -> ServedModel:
        """The served model, after checking the name/version of the URL and readiness.

        Raises:
            NotFound: another model name, or a version that is neither the semantic nor the registry version.
            NotReady: still loading, or refused (the message gives the reason).
        """
        if name is not None and name != self.config.model:
            raise NotFound(f"model '{name}' is not served here; this server serves '{self.config.model}'")
        if version is not None and version not in (self.config.version, self.config.registry_version):
            raise NotFound(
                f"model '{self.config.model}' version '{version}' is not served here; this server serves "
                f"version '{self.config.version}' (registry version {self.config.registry_version})"
            )
        loaded = self.state.loaded
        if loaded is None:
            raise NotReady(f"model '{self.config.model}' is not ready: {self.state.reason}")
        return loaded.model

    def server_metadata(self) -> bytes:
        """``GET /v2``: server name, version and extensions."""
        return orjson.dumps({"name": SERVER_NAME, "version": __version__, "extensions": list(V2_EXTENSIONS)})

    def model_metadata(self, name: str, version: str | None = None) -> bytes:
        """``GET /v2/models/<name>``: inputs (signature columns), outputs and provenance.

        Raises:
            NotFound, NotReady.
        """
        model = self.model_or_raise(name, version)
        loaded = self.state.loaded
        assert loaded is not None
        outputs: list[dict[str, Any]] = [
            {
                "name": OUTPUT_PREDICT,
                "datatype": v2_datatype_of(model.classes) if model.classes is not None else "FP64",
                "shape": [-1],
            }
        ]
        if model.has_proba:
            n_classes = len(model.classes_list or [])
            outputs.append(
                {
                    "name": OUTPUT_PROBA,
                    "datatype": "FP64",
                    "shape": [-1, n_classes],
                    "parameters": {"classes": model.classes_list},
                }
            )
        parameters = {
            "model_uri": self.config.model_uri,
            "registry_version": self.config.registry_version,
            "stage": self.config.stage,
            "run_id": loaded.metadata.run_id,
            "sklearn_version": loaded.metadata.sklearn_version,
            "estimator": type(model.final_estimator).__name__,
        }
        return v2_model_metadata(
            name=self.config.model,
            versions=[self.config.version],
            schema=model.schema,
            outputs=outputs,
            parameters=parameters,
        )

    @staticmethod
    def mlflow_version() -> str:
        """``GET /version``: the MLflow version, as ``mlflow models serve`` answers."""
        return mlflow.__version__

    # ------------------------------------------------------------------------------ infer

    def prepare_v2(
        self, name: str, version: str | None, body: bytes, request_id: str | None, json_length: str | None = None
    ) -> InferJob:
        """Parse a V2 infer request (the body's ``id`` wins over the header's request id).

        Args:
            json_length: the ``Inference-Header-Content-Length`` header (binary tensor data), if any.

        Raises:
            NotFound, NotReady, TooLarge, and the input errors of :func:`~.protocol.parse_v2_infer`.
        """
        started = time.perf_counter()
        model = self.model_or_raise(name, version)
        request = parse_v2_infer(body, model.schema, json_length)
        outputs = check_outputs(request.outputs, model.outputs)
        job = self._job("v2", model, request.batch, request.id or request_id, started, outputs)
        job.binary_outputs = request.binary_outputs(outputs)
        return job

    def prepare_invocations(self, body: bytes, content_type: str | None, request_id: str | None) -> InferJob:
        """Parse an MLflow ``/invocations`` request.

        Raises:
            NotReady, and the input errors of :func:`~.protocol.parse_invocations`.
        """
        started = time.perf_counter()
        model = self.model_or_raise()
        batch = parse_invocations(body, content_type, model.schema)
        return self._job("mlflow", model, batch, request_id, started, (OUTPUT_PREDICT,))

    def _job(
        self,
        protocol: str,
        model: ServedModel,
        batch: Batch,
        request_id: str | None,
        started: float,
        outputs: tuple[str, ...],
    ) -> InferJob:
        if batch.n_rows == 0:
            raise ShapeError("the request holds no rows")
        if batch.n_rows > self.limits.max_rows:
            raise TooLarge(f"the request holds {batch.n_rows} rows; the limit is {self.limits.max_rows} (max_rows)")
        if request_id and len(request_id) > self.limits.max_request_id_chars:
            raise MalformedBody(
                f"the request id has {len(request_id)} characters; the limit is {self.limits.max_request_id_chars}"
            )
        request_id = request_id or f"{self._id_prefix}-{next(self._id_counter)}"
        return InferJob(protocol, model, batch, request_id, started, time.time(), outputs)

    def run(self, job: InferJob) -> InferResult:
        """Predict and encode a prepared request. CPU-bound; safe to run in a worker thread.

        Nothing is counted or logged here: :meth:`commit` does it once the response is built.

        Raises:
            RejectedByModel: the estimator rejected the input.
        """
        # Probabilities are computed when returned, or when they decide the class anyway (then
        # they cost nothing extra and go into the prediction log).
        return self.respond(job, job.model.predict(job.batch, want_proba=job.wants_proba))

    def respond(self, job: InferJob, prediction: Prediction) -> InferResult:
        """Encode the response of ``job`` given its ``prediction`` (also for rows predicted in a merged batch)."""
        model = job.model
        headers = {REQUEST_ID_HEADER: header_safe(job.request_id)}
        media_type = JSON
        if job.protocol == "v2":
            body, json_length = encode_v2_response(
                model_name=self.config.model,
                model_version=self.config.version,
                request_id=job.request_id,
                prediction=prediction,
                outputs=job.outputs,
                classes=model.classes_list,
                binary=job.binary_outputs,
            )
            if json_length is not None:
                headers[BINARY_HEADER_LENGTH] = str(json_length)
                media_type = OCTET_STREAM
        else:
            body = encode_invocations_response(prediction)
        return InferResult(body, media_type, headers, prediction, time.perf_counter() - job.started)

    def commit(self, job: InferJob, result: InferResult) -> None:
        """Count a request whose response was built (metrics) and append it to the prediction log."""
        self.metrics.observe(result.prediction.predict, result.seconds, classifier=job.model.classes is not None)
        self._log(job, result.prediction, result.seconds * 1000.0, LOG_STATUS_OK)

    def record_fault(self, job: InferJob | None) -> None:
        """Log the rows of a request that failed with a server fault (status ``error``) when they were parsed."""
        if job is None:
            return
        predictions = np.full(job.batch.n_rows, None, dtype=object)
        self._log(job, Prediction(predictions), (time.perf_counter() - job.started) * 1000.0, LOG_STATUS_ERROR)

    def _log(self, job: InferJob, prediction: Prediction, latency_ms: float, status: str) -> None:
        if self.logger is not None:
            log_rows(
                self.logger, job, self.config.version, self.config.registry_version, prediction, latency_ms, status
            )

    # --------------------------------------------------------------------------- feedback

    def feedback(self, name: str | None, body: bytes) -> bytes:
        """Record ground-truth labels by request id; returns ``{"accepted": n}``.

        Raises:
            NotFound: another model name, or the prediction log is off (feedback is stored beside it).
            MalformedBody: see :func:`~.protocol.parse_feedback`.
        """
        if name is not None and name != self.config.model:
            raise NotFound(f"model '{name}' is not served here; this server serves '{self.config.model}'")
        if self.logger is None:
            raise NotFound("feedback is disabled: this server has no prediction log (PREDICTION_LOG_URI is unset)")
        items = parse_feedback(body)
        now = time.time()
        for request_id, label in items:
            self.logger.log_feedback(request_id, label, timestamp=now)
        return orjson.dumps({"accepted": len(items)})


def log_rows(
    logger: PredictionLogger,
    job: InferJob,
    version: str,
    registry_version: str,
    prediction: Prediction,
    latency_ms: float,
    status: str,
) -> None:
    """Append the rows of one request to a prediction log (features as parsed, ``prediction.predict``,
    the predicted class's probability when computed), under ``version``/``registry_version``."""
    batch = job.batch
    features: Any
    if batch.columns is None and batch.matrix is not None:
        features = FeatureMatrix(batch.names, batch.matrix)
    else:
        features = batch.column_arrays()
    probability = None if prediction.proba is None else prediction.proba.max(axis=1)
    logger.log_batch(
        model_version=version,
        registry_version=registry_version,
        features=features,
        predictions=prediction.predict,
        probabilities=probability,
        latency_ms=latency_ms,
        request_id=job.request_id,
        timestamp=job.timestamp,
        status=status,
    )
