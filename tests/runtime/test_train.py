"""The training runtime on real datasets, in-process against a private sqlite MLflow store."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from modelops.api.modelversion import DataSpec
from modelops.contract import (
    ARTIFACT_PROFILE,
    ARTIFACT_REFERENCE,
    ENV_JOB_CONFIG,
    EXIT_INVALID_INPUT,
    TAG_DATASET_HASH,
    TAG_DATASET_URI,
    TAG_FAILURE,
    TAG_PARENT,
    TAG_SEMVER,
    TAG_UID,
    Owner,
    TrainingResult,
    TrainJobConfig,
)
from modelops.datapolicy import DataUriPolicy
from modelops.registry.models import load_model
from modelops.registry.operations import find_run_by_uid
from modelops_runtime.jobrun import Terminated
from modelops_runtime.train import job
from tests.mlflow_testing import MlflowStore, mlflow_store, mlflow_template, reset_mlflow_uris  # noqa: F401

EXPERIMENT = "model-training"


def local_data(folder: Path) -> DataUriPolicy:
    """The production data URI policy with ``folder`` as the data folder."""
    return DataUriPolicy(local_path_prefixes=[str(folder)])


def make_config(uri: str, target: str, estimator: str, uid: str, **extra: Any) -> TrainJobConfig:
    """A job config as the operator would build it (the production data URI policy unless given)."""
    data = DataSpec(uri=uri, target=target, **extra.pop("data", {}))
    return TrainJobConfig(
        owner=Owner(kind="ModelVersion", namespace="team-a", name=f"cr-{uid}", uid=uid),
        model="demo",
        version=extra.pop("version", "1.1.0"),
        parent_version=extra.pop("parent_version", "1.0.0"),
        data=data,
        estimator=estimator,
        **extra,
    )


def run_train(
    config: TrainJobConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run ``modelops-runtime train`` in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv(ENV_JOB_CONFIG, config.to_env())
    code = job.main([])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store(mlflow_store: MlflowStore) -> MlflowStore:  # noqa: F811
    """The test's MLflow store with the training experiment's artifacts under tmp_path."""
    mlflow_store.experiment(EXPERIMENT)
    return mlflow_store


def only_run(store: MlflowStore, uid: str) -> mlflow.entities.Run:
    runs = store.client.search_runs(
        [store.experiment(EXPERIMENT)], filter_string=f"tags.`{TAG_UID}` = '{uid}'", max_results=10
    )
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def test_breast_cancer_random_forest(
    store: MlflowStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(
        "sklearn://breast_cancer",
        "target",
        "sklearn.ensemble.RandomForestClassifier",
        "uid-bc",
        hyperparameters={"n_estimators": 60, "max_depth": 8},
        reference_sample_rows=100,
    )
    code, out, err = run_train(config, monkeypatch, capsys)
    assert code == 0, err
    assert err == ""
    assert "trained demo 1.1.0" in out

    run = only_run(store, "uid-bc")
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert m["accuracy"] > 0.9
    for key in (
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "precision_weighted",
        "recall_weighted",
        "f1_weighted",
        "f1_score",
        "roc_auc",
    ):
        assert 0.8 < m[key] <= 1.0, key
    assert m["training_time_s"] > 0
    assert 0 < m["inference_time_ms"] < 50
    # Metrics are linked to the run's logged model, one entry per metric.
    (output,) = run.outputs.model_outputs
    logged = store.client.get_logged_model(output.model_id)
    assert {x.key: x.value for x in logged.metrics or []} == m
    assert len(store.client.get_metric_history(run.info.run_id, "accuracy")) == 1

    tags = run.data.tags
    assert tags[TAG_SEMVER] == "1.1.0" and tags[TAG_PARENT] == "1.0.0"
    assert tags["modelops.namespace"] == "team-a" and tags["modelops.name"] == "cr-uid-bc"
    assert tags[TAG_DATASET_URI] == "sklearn://breast_cancer"
    assert re.fullmatch(r"[0-9a-f]{64}", tags[TAG_DATASET_HASH])
    result = TrainingResult.from_tags(tags)
    assert result.algorithm == "RandomForestClassifier" and result.task == "classification"
    assert result.classes == ["0", "1"]
    assert result.features is not None and len(result.features) == 30 and result.features[0] == "mean radius"
    assert result.training_rows == 455  # 80 % of 569, stratified
    assert result.size_bytes is not None and result.size_bytes > 10_000

    params = run.data.params
    assert params["n_estimators"] == "60" and params["max_depth"] == "8"
    assert params["random_state"] == "42"  # from the config, as the estimator accepts it
    assert params["train.estimator"] == "sklearn.ensemble.RandomForestClassifier"

    profile = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{ARTIFACT_PROFILE}")
    assert profile["rows"] == 569
    assert profile["columns"]["mean radius"]["kind"] == "numeric"
    assert profile["columns"]["mean radius"]["missing_share"] == 0.0
    reference = pd.read_parquet(mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/{ARTIFACT_REFERENCE}"))
    assert reference.shape == (100, 31) and "target" in reference.columns

    # Not registered: the operator does that.
    assert store.client.search_registered_models() == []

    # The model loads back under our skops policy and predicts even with a missing value.
    model = load_model(f"runs:/{run.info.run_id}/model")
    frame = pd.DataFrame([dict.fromkeys(result.features, 1.0)])
    frame.iloc[0, 3] = np.nan
    assert model.predict(frame).shape == (1,)

    # A Job retried after success does not train again.
    code, out, err = run_train(config, monkeypatch, capsys)
    assert code == 0 and "already trained" in out
    assert only_run(store, "uid-bc").info.run_id == run.info.run_id


def test_penguins_categorical_with_missing_values(
    store: MlflowStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(
        "penguins://",
        "species",
        "sklearn.ensemble.RandomForestClassifier",
        "uid-peng",
        hyperparameters={"n_estimators": 30},
    )
    code, _, err = run_train(config, monkeypatch, capsys)
    assert code == 0, err
    run = only_run(store, "uid-peng")
    result = TrainingResult.from_tags(run.data.tags)
    assert result.classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert result.features is not None and {"island", "sex"} <= set(result.features)
    assert run.data.metrics["accuracy"] > 0.9
    assert "roc_auc" not in run.data.metrics  # three classes

    model = load_model(f"runs:/{run.info.run_id}/model")
    frame = pd.DataFrame(
        {
            "bill_length_mm": [np.nan, 45.0],
            "bill_depth_mm": [17.0, None],
            "flipper_length_mm": [200.0, 215.0],
            "body_mass_g": [4000.0, 5000.0],
            "year": [2008.0, np.nan],
            "island": ["Atlantis", None],  # unseen category and a missing one
            "sex": [None, "female"],
        }
    )
    predictions = model.predict(frame[result.features])
    assert set(predictions) <= {"Adelie", "Chinstrap", "Gentoo"}
    profile = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{ARTIFACT_PROFILE}")
    assert profile["columns"]["sex"]["missing_share"] > 0
    assert profile["columns"]["island"]["kind"] == "categorical"


def test_csv_with_nulls_string_categories_and_missing_labels(
    store: MlflowStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    n = 240
    income = rng.normal(50, 15, n)
    city = rng.choice(["paris", "lyon", "lille"], n).astype(object)
    label = np.where(income + (city == "paris") * 10 > 55, "high", "low").astype(object)
    frame = pd.DataFrame({"income": income, "age": rng.integers(18, 70, n), "city": city, "label": label})
    frame.loc[::7, "income"] = np.nan
    frame.loc[::11, "city"] = None
    frame.loc[[3, 50, 99], "label"] = None
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)

    config = make_config(
        str(path), "label", "sklearn.linear_model.LogisticRegression", "uid-csv", data_policy=local_data(tmp_path)
    )
    code, _, err = run_train(config, monkeypatch, capsys)
    assert code == 0, err
    run = only_run(store, "uid-csv")
    assert run.data.params["train.rows_dropped_missing_target"] == "3"
    assert run.data.params["train.rows_total"] == str(n)
    assert run.data.metrics["accuracy"] > 0.7
    assert TrainingResult.from_tags(run.data.tags).classes == ["high", "low"]


def test_parquet_over_http_and_explicit_feature_lists(
    store: MlflowStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import functools
    import http.server
    import threading

    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame["noise"] = "x"
    (tmp_path / "www").mkdir()
    frame.to_parquet(tmp_path / "www" / "iris.parquet")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/iris.parquet"
        numeric = ["sepal length (cm)", "petal length (cm)"]
        config = make_config(
            url,
            "target",
            "sklearn.tree.DecisionTreeClassifier",
            "uid-http",
            data={"numeric_features": numeric},
            data_policy=DataUriPolicy(allowed_networks=["127.0.0.1/32"]),  # the test's server is on loopback
        )
        code, _, err = run_train(config, monkeypatch, capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, err
    run = only_run(store, "uid-http")
    assert TrainingResult.from_tags(run.data.tags).features == numeric  # only the listed columns
    assert run.data.metrics["accuracy"] > 0.85


def test_regression_on_diabetes(
    store: MlflowStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(
        "sklearn://diabetes", "target", "sklearn.linear_model.Ridge", "uid-reg", hyperparameters={"alpha": 0.5}
    )
    code, _, err = run_train(config, monkeypatch, capsys)
    assert code == 0, err
    run = only_run(store, "uid-reg")
    m = run.data.metrics
    assert 0.3 < m["r2"] < 0.7
    assert 40 < m["rmse"] < 70 and 30 < m["mae"] < 60 and m["mae"] < m["rmse"]
    assert "accuracy" not in m
    result = TrainingResult.from_tags(run.data.tags)
    assert result.task == "regression" and result.classes is None


def _one_class_csv(tmp_path: Path) -> str:
    path = tmp_path / "one_class.csv"
    pd.DataFrame({"x": range(20), "y": ["yes"] * 20}).to_csv(path, index=False)
    return str(path)


BAD_INPUTS = {
    "unknown estimator": (
        lambda p: make_config("sklearn://iris", "target", "sklearn.ensemble.NoSuchForest", "bad-1"),
        r"unknown estimator 'sklearn\.ensemble\.NoSuchForest'",
    ),
    "outside allowlist": (
        lambda p: make_config("sklearn://iris", "target", "xgboost.XGBClassifier", "bad-2"),
        r"outside the allowed modules \['sklearn\.'\]",
    ),
    "unknown hyperparameter": (
        lambda p: make_config(
            "sklearn://iris",
            "target",
            "sklearn.ensemble.RandomForestClassifier",
            "bad-3",
            hyperparameters={"n_estimatorz": 10},
        ),
        r"unknown hyperparameter 'n_estimatorz' for RandomForestClassifier; valid: .*n_estimators",
    ),
    "bad hyperparameter value": (
        lambda p: make_config(
            "sklearn://iris",
            "target",
            "sklearn.ensemble.RandomForestClassifier",
            "bad-4",
            hyperparameters={"n_estimators": -3},
        ),
        r"invalid hyperparameter value: .*n_estimators",
    ),
    "missing dataset": (
        lambda p: make_config(
            str(p / "nope.csv"), "target", "sklearn.linear_model.LogisticRegression", "bad-5", data_policy=local_data(p)
        ),
        r"dataset not found: .*nope\.csv",
    ),
    "missing target column": (
        lambda p: make_config("sklearn://wine", "quality", "sklearn.linear_model.LogisticRegression", "bad-6"),
        r"target column 'quality' not in dataset",
    ),
    "one class": (
        lambda p: make_config(
            _one_class_csv(p), "y", "sklearn.linear_model.LogisticRegression", "bad-7", data_policy=local_data(p)
        ),
        r"target column 'y' has a single class; a classifier needs at least two",
    ),
    "csv outside the data folder": (  # the production policy: the data volume only
        lambda p: make_config(_one_class_csv(p), "y", "sklearn.linear_model.LogisticRegression", "bad-8"),
        r"data\.uri refused by the data URI policy: local path '.*one_class\.csv' is outside the allowed data "
        r"folders \(/var/lib/modelops/data\)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_the_run_with_exit_2(
    case: str,
    store: MlflowStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    build, pattern = BAD_INPUTS[case]
    config = build(tmp_path)
    code, _, err = run_train(config, monkeypatch, capsys)
    assert code == EXIT_INVALID_INPUT
    assert err.endswith("\n") and err.count("\n") == 1, err  # exactly one line
    assert re.search(pattern, err), err
    run = only_run(store, config.owner.uid)
    assert run.info.status == "FAILED"
    assert re.search(pattern, run.data.tags[TAG_FAILURE])
    assert find_run_by_uid(store.client, EXPERIMENT, config.owner.uid, status="FINISHED") is None


def test_missing_or_invalid_config(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(ENV_JOB_CONFIG, raising=False)
    assert job.main([]) == EXIT_INVALID_INPUT
    assert capsys.readouterr().err == f"training failed: {ENV_JOB_CONFIG} is not set\n"
    monkeypatch.setenv(ENV_JOB_CONFIG, json.dumps({"model": "x"}))
    assert job.main([]) == EXIT_INVALID_INPUT
    err = capsys.readouterr().err
    assert err.startswith("training failed: invalid job config: owner: Field required") and err.count("\n") == 1


def test_mlflow_unreachable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(uri)
    try:
        config = make_config("sklearn://iris", "target", "sklearn.linear_model.LogisticRegression", "uid-down")
        code, _, err = run_train(config, monkeypatch, capsys)
    finally:
        reset_mlflow_uris()
    assert code == 1
    assert err.count("\n") == 1 and f"MLflow unreachable at {uri}" in err, err


def test_sigterm_ends_the_run_killed(
    store: MlflowStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(config: TrainJobConfig, run_id: str) -> job.Outcome:
        raise Terminated("terminated by signal 15")  # what jobrun._on_sigterm raises
        raise AssertionError("unreachable")

    monkeypatch.setattr(job, "train_and_log", interrupted)
    config = make_config("sklearn://iris", "target", "sklearn.linear_model.LogisticRegression", "uid-term")
    code, _, err = run_train(config, monkeypatch, capsys)
    assert code == 1 and "terminated by signal 15" in err
    run = only_run(store, "uid-term")
    assert run.info.status == "KILLED" and run.data.tags[TAG_FAILURE] == "terminated by signal 15"


def test_deleted_experiment_is_a_one_line_failure(
    store: MlflowStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store.client.delete_experiment(store.experiment(EXPERIMENT))
    config = make_config("sklearn://iris", "target", "sklearn.linear_model.LogisticRegression", "uid-gone")
    code, _, err = run_train(config, monkeypatch, capsys)
    assert code == 1
    assert (
        err.startswith("training failed: cannot create the training run in 'model-training'") and err.count("\n") == 1
    )


def test_a_dataset_server_refusing_connections_fails_the_attempt_for_a_retry(
    store: MlflowStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A data server that refuses connections is transient: exit code 1 (the Job retries the pod),
    not 2 (invalid input, final), and the reason says it could not be reached, not 'not found'."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    allow_loopback = DataUriPolicy(allowed_networks=["127.0.0.0/8"])
    config = make_config(
        f"http://127.0.0.1:{port}/iris.csv", "target", "sklearn.linear_model.LogisticRegression", "uid-refused",
        data_policy=allow_loopback,
    )  # fmt: skip
    code, _, err = run_train(config, monkeypatch, capsys)
    assert code == 1, err
    assert "cannot reach dataset" in err and "not found" not in err, err
    assert only_run(store, "uid-refused").info.status == "FAILED"
