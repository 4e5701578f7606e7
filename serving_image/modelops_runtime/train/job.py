"""``modelops-runtime train``: one training Job → one MLflow run in ``config.experiment``.

Reads :class:`modelops.contract.TrainJobConfig` from ``MODELOPS_JOB_CONFIG`` (or ``--config-file``),
trains a scikit-learn pipeline and logs to MLflow (``MLFLOW_TRACKING_URI``): params, metrics,
the model (``model``), the data profile, a reference sample for drift detection, and the tags
of the contract (owner, semver, dataset URI and hash, ``model.*`` metadata). It does not register
the model: the operator does that after finding the run by the owner's uid.

Exit codes: 0 success (or an earlier successful run of the same owner uid and version exists),
2 invalid input (config, dataset, target, estimator, hyperparameters, one class), 1 anything
else, including MLflow being unreachable. On failure the run gets ``modelops.failure_reason``
and status FAILED, and exactly one line goes to stderr; progress and library logs go to stdout.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.contract import (
    ARTIFACT_MODEL,
    ARTIFACT_PROFILE,
    ARTIFACT_REFERENCE,
    EXIT_INVALID_INPUT,
    TAG_DATASET_HASH,
    TAG_DATASET_URI,
    TAG_FAILURE,
    TAG_PARENT,
    TAG_SEMVER,
    TrainingResult,
    TrainJobConfig,
)

from ..jobrun import EXIT_FAILED, EXIT_OK, InvalidInput, Terminated, gc_paused, one_line, read_config, run_main
from .errors import DatasetUnavailable

log = logging.getLogger("modelops.train")

#: Rows of the input example stored with the model.
INPUT_EXAMPLE_ROWS = 5
#: Params of the runtime itself (not estimator hyperparameters) are logged under this prefix.
PARAM_PREFIX = "train."
#: What a training run imports, in this order (see :func:`import_training_stack`).
TRAINING_STACK = (
    "scipy.special",  # first: see import_training_stack
    "modelops_runtime.train.pipeline",  # pandas, numpy, scipy, scikit-learn
    "modelops_runtime.train.data",
    "modelops_runtime.train.metrics",
    "skops.io",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.models",
)


@dataclass
class Outcome:
    """What a successful training run produced."""

    run_id: str
    metrics: dict[str, float]
    result: TrainingResult
    reused: bool = False


def load_config(env: Mapping[str, str], config_file: str | None = None) -> TrainJobConfig:
    """Parse the job config from ``config_file`` or the ``MODELOPS_JOB_CONFIG`` env var.

    Raises :class:`InvalidInput` when it is missing or does not validate.
    """
    return read_config(TrainJobConfig, env, config_file)


def import_training_stack() -> None:
    """Import :data:`TRAINING_STACK` in order, with the garbage collector paused (see ``gc_paused``).

    The order matters for time, not behaviour. Importing ``skops.io`` builds skops' default
    trusted-type tables: it looks up each of the ~230 ``scipy.special`` ufuncs (they have no
    ``__module__``) by scanning ``sys.modules`` in import order until the module holding it. With
    ``scipy.special`` among the first modules imported each scan stops early: importing skops
    took 0.35 to 0.5 s instead of 0.6 s (after pandas and scikit-learn) or 1.0 s (after MLflow).
    Idempotent (modules already imported cost nothing). Raises ``ImportError`` if one is missing.
    """
    import importlib

    with gc_paused():
        for name in TRAINING_STACK:
            importlib.import_module(name)


def train_and_log(config: TrainJobConfig, run_id: str) -> Outcome:
    """Train and log everything into the active MLflow run ``run_id``; raises :class:`InvalidInput` for bad input."""
    import mlflow
    import mlflow.sklearn
    import sklearn
    from mlflow.models import infer_signature

    # scikit-learn's parameter validation error (ValueError + TypeError), raised by fit for bad values.
    from sklearn.utils._param_validation import InvalidParameterError

    from modelops.registry.errors import UntrustedModel
    from modelops.registry.models import trusted_types_for

    from . import data as data_mod
    from . import metrics as metrics_mod
    from . import pipeline as pipe

    # 1. Estimator first: cheap to check, so bad input fails before a large download.
    estimator_cls = pipe.resolve_estimator(config.estimator, config.allowed_estimator_modules)
    estimator = pipe.make_estimator(estimator_cls, config.hyperparameters, config.random_state)
    task = pipe.task_of(estimator)

    # 2. Data.
    frame = data_mod.load_dataset(config.data, config.data_policy)
    mlflow.set_tag(TAG_DATASET_HASH, data_mod.dataset_hash(frame))
    split = pipe.split_dataset(frame, config.data, task, config.test_size, config.random_state)
    features, dropped = split.features, split.dropped
    x_train, x_test, y_train, y_test = split.x_train, split.x_test, split.y_train, split.y_test
    target_name = config.data.target
    log.info(
        "dataset %s: %d rows (%d dropped: missing target), %d features",
        config.data.uri,
        len(frame),
        dropped,
        len(features.all),
    )

    # 3. Fit and evaluate.
    model = pipe.build_pipeline(features, estimator)
    started = time.perf_counter()
    try:
        model.fit(x_train, y_train)
    except InvalidParameterError as exc:
        raise InvalidInput(f"invalid hyperparameter value: {one_line(exc)}") from exc
    training_time = time.perf_counter() - started
    metrics, _ = metrics_mod.evaluate(task, model, x_test, y_test)
    metrics["training_time_s"] = training_time

    # 4. Params and metrics.
    params: dict[str, Any] = {k: v for k, v in estimator.get_params(deep=False).items()}
    params.update(
        {
            f"{PARAM_PREFIX}estimator": config.estimator,
            f"{PARAM_PREFIX}task": task,
            f"{PARAM_PREFIX}target": target_name,
            f"{PARAM_PREFIX}test_size": config.test_size,
            f"{PARAM_PREFIX}random_state": config.random_state,
            f"{PARAM_PREFIX}rows_total": len(frame),
            f"{PARAM_PREFIX}rows_dropped_missing_target": dropped,
            f"{PARAM_PREFIX}rows_train": len(x_train),
            f"{PARAM_PREFIX}rows_test": len(x_test),
            f"{PARAM_PREFIX}numeric_features": len(features.numeric),
            f"{PARAM_PREFIX}categorical_features": len(features.categorical),
        }
    )
    mlflow.log_params(params)

    # 5. Profile and drift reference.
    profile = metrics_mod.profile_frame(frame)
    profile.update(
        target=target_name,
        task=task,
        rows_dropped_missing_target=dropped,
        numeric_features=features.numeric,
        categorical_features=features.categorical,
        ignored_columns=features.ignored,
    )
    mlflow.log_dict(profile, ARTIFACT_PROFILE)
    reference = x_train.assign(**{target_name: y_train})
    if len(reference) > config.reference_sample_rows:
        reference = reference.sample(n=config.reference_sample_rows, random_state=config.random_state)
    with tempfile.TemporaryDirectory(prefix="modelops-train-") as tmp:
        ref_path = Path(tmp) / Path(ARTIFACT_REFERENCE).name
        reference.to_parquet(ref_path, index=False)
        ref_dir = str(Path(ARTIFACT_REFERENCE).parent)
        mlflow.log_artifact(str(ref_path), artifact_path=None if ref_dir == "." else ref_dir)

    # 6. The model: skops with our trusted types, explicit requirements (no slow inference).
    try:
        skops_info = trusted_types_for(model)
    except UntrustedModel as exc:
        raise InvalidInput(f"{config.estimator} cannot be saved with skops under the trusted types: {exc}") from exc
    complete = x_train.dropna()
    example = (complete if len(complete) else x_train).head(INPUT_EXAMPLE_ROWS)
    signature = required_inputs(infer_signature(x_train, model.predict(x_train.head(INPUT_EXAMPLE_ROWS))))
    started = time.perf_counter()
    info = mlflow.sklearn.log_model(
        model,
        name=ARTIFACT_MODEL,
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
        serialization_format="skops",
        skops_trusted_types=skops_info.trusted_types,
    )
    log.info("log_model took %.2f s", time.perf_counter() - started)
    # Metrics after the model, linked to it in the same call: logged before, log_model would link
    # them itself with one metric-history request per metric (13 for a binary classifier) and log
    # them twice.
    mlflow.log_metrics(metrics, model_id=info.model_id)

    classes = [str(c) for c in model.classes_] if task == "classification" else None
    result = TrainingResult(
        framework_version=sklearn.__version__,
        algorithm=estimator_cls.__name__,
        task=task,
        size_bytes=skops_info.size_bytes,
        training_rows=len(x_train),
        features=list(signature.inputs.input_names()) if signature.inputs else features.all,
        classes=classes,
    )
    mlflow.set_tags(result.to_tags())
    return Outcome(run_id=run_id, metrics=metrics, result=result)


def required_inputs(signature: Any) -> Any:
    """``signature`` with every input column marked required: a request must name every feature.

    MLflow infers ``required=False`` for a column that has NaN in the training data, and a model
    server then fills the column with missing values when a request leaves it out: a client that
    forgot a column would get predictions from imputed values. Missing *values* need no such flag:
    a null in a present column is accepted (MLflow enforces ``required`` on presence only).
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = signature.inputs
    if inputs is None or not all(isinstance(col, ColSpec) for col in inputs.inputs):
        return signature
    strict = Schema([ColSpec(col.type, col.name, required=True) for col in inputs.inputs])
    return ModelSignature(inputs=strict, outputs=signature.outputs, params=signature.params)


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged model: what loading and predicting need, from installed versions."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy"):
        try:
            out.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            out.append(package)
    return out


def _record_failure(client: Any, run_id: str, reason: str, status: str = "FAILED") -> None:
    """Tag the run with the failure reason and end it with ``status``; MLflow errors here are logged, not raised."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    try:
        client.set_tag(run_id, TAG_FAILURE, reason[:5000])
        mlflow.end_run(status=status)
    except (MlflowException, RequestException) as exc:
        log.warning("could not record the failure in MLflow run %s: %s", run_id, one_line(exc))
        with contextlib.suppress(MlflowException, RequestException):
            mlflow.end_run(status=status)  # pops the fluent run stack even if the server is gone


def run_job(config: TrainJobConfig) -> tuple[int, str]:
    """Run one training job; returns ``(exit code, one-line message)`` and never raises for job failures."""
    started = time.perf_counter()
    import_training_stack()
    log.info("training stack imported in %.2f s", time.perf_counter() - started)
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from modelops.registry.errors import RegistryUnavailable, is_unavailable, translate_errors
    from modelops.registry.operations import find_run_by_uid

    tracking = mlflow.get_tracking_uri()
    client = MlflowClient()
    try:
        previous = find_run_by_uid(client, config.experiment, config.owner.uid, status="FINISHED")
        if previous is not None and previous.data.tags.get(TAG_SEMVER) == config.version:
            return EXIT_OK, f"already trained: run {previous.info.run_id} of {config.model} {config.version}"
        with translate_errors("creating the training run"):
            experiment = mlflow.set_experiment(config.experiment)
            tags = {**config.owner.tags(), TAG_SEMVER: config.version, TAG_DATASET_URI: config.data.uri}
            if config.parent_version:
                tags[TAG_PARENT] = config.parent_version
            active = mlflow.start_run(
                experiment_id=experiment.experiment_id, run_name=f"{config.model}-{config.version}", tags=tags
            )
    except RegistryUnavailable as exc:
        return EXIT_FAILED, f"MLflow unreachable at {tracking}: {one_line(exc.__cause__ or exc, 300)}"
    except MlflowException as exc:  # e.g. the experiment was deleted, permission denied
        return EXIT_FAILED, f"cannot create the training run in {config.experiment!r}: {one_line(exc, 300)}"

    run_id = active.info.run_id
    try:
        outcome = train_and_log(config, run_id)
        with translate_errors("ending the training run"):
            mlflow.end_run(status="FINISHED")
    except InvalidInput as exc:
        reason = one_line(exc)
        _record_failure(client, run_id, reason)
        return EXIT_INVALID_INPUT, reason
    except Terminated as exc:
        reason = one_line(exc)
        _record_failure(client, run_id, reason, status="KILLED")
        return EXIT_FAILED, reason
    except RegistryUnavailable as exc:
        reason = f"MLflow unreachable at {tracking}: {one_line(exc.__cause__ or exc, 300)}"
        _record_failure(client, run_id, reason)
        return EXIT_FAILED, reason
    except DatasetUnavailable as exc:  # transient: exit 1, the Job retries; the message is safe to show
        reason = one_line(exc)
        _record_failure(client, run_id, reason)
        return EXIT_FAILED, reason
    except Exception as exc:  # process boundary: any other failure must end the run FAILED with its reason
        log.exception("training failed")
        # Only the class: an unexpected error's message may quote the dataset, and the reason
        # reaches the ModelVersion's status. The traceback is in the pod log (stdout).
        reason = f"{type(exc).__name__} while training (the traceback is in the training pod's log)"
        if is_unavailable(exc):
            reason = f"MLflow unreachable at {tracking}: {one_line(exc, 300)}"
        _record_failure(client, run_id, reason)
        return EXIT_FAILED, reason
    summary = ", ".join(f"{k}={v:.4g}" for k, v in sorted(outcome.metrics.items()))
    return EXIT_OK, f"trained {config.model} {config.version} in run {run_id}: {summary}"


def main(args: list[str]) -> int:
    """Entry point of ``modelops-runtime train [--config-file PATH]``; returns the exit code."""
    return run_main("train", __doc__.splitlines()[0], args, load_config, run_job, "training")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
