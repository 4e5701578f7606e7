"""The original document's MLflow configuration API and the skops model loader."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modelops.contract import TAG_SEMVER, TAG_STAGE
from modelops.registry import (
    MlflowConfig,
    ModelVersionNotFound,
    UntrustedModel,
    get_mlflow_config,
    initialize_mlflow,
    load_model,
)
from modelops.registry.models import check_trusted
from tests.mlflow_testing import (  # noqa: F401
    LoggedRuns,
    MlflowStore,
    logged_runs,
    logged_runs_template,
    mlflow_store,
    mlflow_template,
)

#: Explicit requirements: inferring them costs seconds per saved model.
REQS = ["scikit-learn"]


def test_config_from_env_defaults_and_overrides() -> None:
    default = MlflowConfig.from_env({})
    assert default.tracking_uri == "sqlite:///mlruns/mlflow.db"  # the document's backend store default
    assert default.artifact_location == "mlruns/artifacts"
    assert default.default_experiment == "model-training"
    assert default.default_model_name == "future-skills-model"
    remote = MlflowConfig.from_env(
        {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "MLFLOW_EXPERIMENT_NAME": "exp", "MLFLOW_MODEL_NAME": "m"}
    )
    assert remote.tracking_uri == "http://mlflow:5000"
    assert remote.artifact_location is None  # a server decides its own artifact root
    assert (remote.default_experiment, remote.default_model_name) == ("exp", "m")
    backend = MlflowConfig.from_env(
        {"MLFLOW_BACKEND_STORE_URI": "sqlite:///x.db", "MLFLOW_ARTIFACT_LOCATION": "s3://b/a"}
    )
    assert (backend.tracking_uri, backend.artifact_location) == ("sqlite:///x.db", "s3://b/a")


def test_get_mlflow_config_reads_env_once(mlflow_store: MlflowStore) -> None:  # noqa: F811
    get_mlflow_config.cache_clear()
    try:
        config = initialize_mlflow()
        assert config is get_mlflow_config()
        assert config.tracking_uri == mlflow_store.uri
        names = {e.name for e in mlflow_store.client.search_experiments()}
        assert {"model-training", "model-evaluation", "production-monitoring", "future-skills-prediction"} <= names
        experiment = mlflow_store.client.get_experiment_by_name("model-training")
        assert experiment is not None
        assert experiment.artifact_location == (mlflow_store.root / "mlruns/artifacts/model-training").as_uri()
        config.setup()  # idempotent
    finally:
        get_mlflow_config.cache_clear()


def test_start_run_finishes_or_fails(mlflow_store: MlflowStore) -> None:  # noqa: F811
    config = MlflowConfig(tracking_uri=mlflow_store.uri, artifact_location=str(mlflow_store.root / "art"))
    with config.start_run(run_name="training_v1.0.0", experiment_name="model-training") as run:
        mlflow.log_param("n_estimators", 100)
        mlflow.log_metric("accuracy", 0.92)
    finished = mlflow_store.client.get_run(run.info.run_id)
    assert finished.info.status == "FINISHED" and finished.info.run_name == "training_v1.0.0"
    assert finished.data.metrics == {"accuracy": 0.92}
    with pytest.raises(RuntimeError), config.start_run(run_name="broken") as failing:
        raise RuntimeError("boom")
    assert mlflow_store.client.get_run(failing.info.run_id).info.status == "FAILED"


def test_document_workflow_register_transition_load(logged_runs: LoggedRuns) -> None:  # noqa: F811
    """The original document's example: register, promote with archive_existing, load production."""
    store = logged_runs.store
    config = MlflowConfig(tracking_uri=store.uri)
    first = config.register_model(
        model_uri=f"runs:/{logged_runs.run_ids[0]}/model",
        model_name="future-skills-model",
        tags={"version": "1.0.0", "framework": "scikit-learn"},
        description="Future skills prediction model",
    )
    assert str(first.version) == "1" and first.description == "Future skills prediction model"
    assert first.tags == {"version": "1.0.0", "framework": "scikit-learn"}
    again = config.register_model(f"runs:/{logged_runs.run_ids[0]}/model", "future-skills-model")
    assert str(again.version) == "1"  # same run: no duplicate
    second = config.register_model(f"runs:/{logged_runs.run_ids[1]}/model", "future-skills-model")
    assert str(second.version) == "2"

    with pytest.raises(ModelVersionNotFound):
        config.get_production_model_uri()
    config.transition_model_stage("future-skills-model", version=first.version, stage="Production")
    config.transition_model_stage("future-skills-model", "2", "Production", archive_existing=True)
    client = store.client
    assert client.get_model_version("future-skills-model", "1").tags[TAG_STAGE] == "Archived"
    assert client.get_model_version("future-skills-model", "2").tags[TAG_STAGE] == "Production"
    assert client.get_model_version_by_alias("future-skills-model", "production").version in (2, "2")

    uri = config.get_production_model_uri()
    assert uri == "models:/future-skills-model/2"
    assert config.get_production_model_uri(pinned=False) == "models:/future-skills-model@production"
    model = load_model(uri)
    x, _ = load_iris(return_X_y=True, as_frame=True)
    assert model.predict(x.head(3)).shape == (3,)


def test_register_model_by_logged_model_uri(logged_runs: LoggedRuns) -> None:  # noqa: F811
    config = MlflowConfig(tracking_uri=logged_runs.store.uri)
    client = logged_runs.store.client
    run = client.get_run(logged_runs.run_ids[2])
    assert run.outputs is not None
    model_id = run.outputs.model_outputs[0].model_id
    version = config.register_model(f"models:/{model_id}", "by-id", tags={TAG_SEMVER: "3.0.0"})
    assert str(version.version) == "1" and version.tags[TAG_SEMVER] == "3.0.0"


def test_loader_refuses_untrusted_types_and_pickle(tmp_path: Path) -> None:
    assert check_trusted(["sklearn.tree._tree.Tree", "numpy.dtype"]) == ["numpy.dtype", "sklearn.tree._tree.Tree"]
    with pytest.raises(UntrustedModel, match=r"builtins\.eval"):
        check_trusted(["sklearn.tree._tree.Tree", "builtins.eval"])
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(x, y)
    pickled = tmp_path / "pickled"
    mlflow.sklearn.save_model(model, str(pickled), serialization_format="cloudpickle", pip_requirements=REQS)
    with pytest.raises(UntrustedModel, match="only skops models are loaded"):
        load_model(str(pickled))
    safe = tmp_path / "safe"
    mlflow.sklearn.save_model(model, str(safe), serialization_format="skops", pip_requirements=REQS)
    assert load_model(str(safe)).predict(x[:2]).shape == (2,)
    forest = tmp_path / "forest"
    mlflow.sklearn.save_model(
        DecisionTreeClassifier(max_depth=2).fit(x, y),
        str(forest),
        skops_trusted_types=["sklearn.tree._tree.Tree", "numpy.dtype"],
        pip_requirements=REQS,
    )
    assert load_model(str(forest)).predict(x[:2]).shape == (2,)
    # Test doubles are no model's parts, even where they derive from BaseEstimator.
    with pytest.raises(UntrustedModel, match=r"CheckingClassifier \(a test helper module\)"):
        check_trusted(["sklearn.utils._mocking.CheckingClassifier"])
    # The policy is ours, not the list the model's MLmodel file declares.
    with pytest.raises(UntrustedModel, match=r"outside the trusted set: sklearn\.tree\._tree\.Tree \(not an estimator"):
        load_model(str(forest), trusted_bases=())


#: Callables a crafted skops file can name: a scikit-learn test helper that runs a Python
#: subprocess, and a public function that downloads from the network.
CALLABLES = {
    "sklearn.utils._testing.assert_run_python_script_without_output": "a test helper module",
    "sklearn.datasets._openml.fetch_openml": "a function, not a class: the model would call it",
}


def save_with_callable(tmp_path: Path, name: str) -> Path:
    """An MLflow skops model whose pipeline holds the callable ``name`` in a FunctionTransformer,
    with the MLmodel file declaring it trusted (what a crafted model would do)."""
    import importlib

    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    module, _, attr = name.rpartition(".")
    func = getattr(importlib.import_module(module), attr)
    x, y = load_iris(return_X_y=True, as_frame=True)
    model = Pipeline([("f", FunctionTransformer()), ("m", LogisticRegression(max_iter=300))]).fit(x, y)
    model.steps[0][1].func = func  # set after fitting: nothing of it runs here
    path = tmp_path / attr
    mlflow.sklearn.save_model(
        model,
        str(path),
        serialization_format="skops",
        skops_trusted_types=[name],
        signature=mlflow.models.infer_signature(x, y),
        input_example=x.head(2),
        pip_requirements=REQS,
    )
    return path


@pytest.mark.parametrize("name", list(CALLABLES))
def test_a_callable_in_a_skops_file_is_refused_before_anything_is_rebuilt(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skops.io

    path = save_with_callable(tmp_path, name)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("skops.io.load ran: the check must come first")

    monkeypatch.setattr(skops.io, "load", never)
    with pytest.raises(UntrustedModel, match=re.escape(f"{name} ({CALLABLES[name]})")):
        load_model(str(path))
