"""Adaptive batching (``ServeConfig.batching``): concurrent requests merged into one predict call.

The answers must be the unbatched server's (issue 18): each request sent concurrently to a batching
server and one at a time to a server without batching, compared field by field. Tree ensembles give
bit-identical probabilities; linear models agree to BLAS rounding (batching.py says why).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from modelops.api.modelversion import BatchingSpec
from modelops.monitoring.prediction_log import read_prediction_log
from modelops.registry.models import trusted_types_for
from modelops_runtime.train.job import required_inputs

from .serve_support import Registered, Running, Store, config_for, metric, records, serving, use_store, v2_columns

#: Long enough that concurrent requests always meet in a batch, whatever the machine's load.
WAIT = BatchingSpec(max_batch_size=8, max_wait_milliseconds=200)


@pytest.fixture(scope="module")
def forest(store: Store) -> Registered:
    """A 50-tree RandomForest on the breast-cancer data (registered with the tree type trusted)."""
    use_store(store)
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(X, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=required_inputs(infer_signature(X, model.predict(X))),
            input_example=X.head(3),
            pip_requirements=["scikit-learn"],
            skops_trusted_types=trusted_types_for(model).trusted_types,
            registered_model_name="bc-forest",
        )
    return Registered("bc-forest", str(info.registered_model_version), model, X, info.model_id)


@contextmanager
def pair(store: Store, model: Registered, *, log: bool = False) -> Iterator[tuple[Running, Running]]:
    """A batching server and an unbatched one for ``model``."""
    use_store(store)
    with ExitStack() as stack:
        log_uri = str(store.root / "batch-log") if log else None
        batched = stack.enter_context(
            serving(config_for(model, batching=WAIT, log_flush_seconds=0.2), log_uri=log_uri)
        )
        plain = stack.enter_context(serving(config_for(model)))
        batched.wait_ready()
        plain.wait_ready()
        yield batched, plain


def v2_body(row: pd.DataFrame, request_id: str, datatypes: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "id": request_id,
        "inputs": v2_columns(row, datatypes),
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }


def concurrently(running: Running, bodies: list[dict[str, Any]], path: str) -> list[httpx.Response]:
    """POST every body, 8 clients at a time (each its own keep-alive connection)."""

    def send(chunk: list[dict[str, Any]]) -> list[httpx.Response]:
        with httpx.Client(base_url=running.url, timeout=60) as client:
            return [client.post(path, json=body) for body in chunk]

    chunks = [bodies[i::8] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(send, chunks))
    by_position: list[httpx.Response] = [None] * len(bodies)  # type: ignore[list-item]
    for i, chunk in enumerate(answered):
        by_position[i::8] = chunk
    return by_position


def outputs(response: httpx.Response) -> dict[str, list[Any]]:
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def assert_unbatched_answers(batched: Running, plain: Running, name: str, bodies: list[dict[str, Any]]) -> None:
    """Each body sent concurrently to ``batched`` gets what it gets alone from ``plain``: the same labels,
    the same probabilities up to BLAS rounding (exactly, for the tree model: checked by its test)."""
    merged = concurrently(batched, bodies, f"/v2/models/{name}/infer")
    alone = [plain.client.post(f"/v2/models/{name}/infer", json=body) for body in bodies]
    for body, a, b in zip(bodies, merged, alone, strict=True):
        got, want = outputs(a), outputs(b)
        assert a.json()["id"] == body["id"]
        assert got["predict"] == want["predict"]
        assert np.allclose(got["predict_proba"], want["predict_proba"], rtol=0, atol=1e-12)


def test_batched_answers_are_the_unbatched_ones_and_are_counted_per_request(
    store: Store, forest: Registered
) -> None:
    X, n = forest.X, 96
    bodies = [v2_body(X.iloc[[i]], f"rf-{i}") for i in range(n)]
    with pair(store, forest, log=True) as (batched, plain):
        merged = concurrently(batched, bodies, f"/v2/models/{forest.name}/infer")
        alone = [plain.client.post(f"/v2/models/{forest.name}/infer", json=body) for body in bodies]
        for i, (a, b) in enumerate(zip(merged, alone, strict=True)):
            assert a.json()["id"] == f"rf-{i}"
            assert outputs(a) == outputs(b)  # bit for bit: labels and probabilities
        # Rows were merged: fewer predict calls than requests, every row in exactly one call.
        calls, rows = metric(batched, "modelops_batch_rows_count"), metric(batched, "modelops_batch_rows_sum")
        assert rows == n and calls < n
        # Metrics and the prediction log stay per request.
        counted = sum(metric(batched, "ml_predictions_total", prediction_class=c) for c in ("0", "1"))
        assert counted == n and metric(batched, "ml_prediction_latency_seconds_count") == n
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while True:
            log = read_prediction_log(
                str(store.root / "batch-log"), forest.name, "Production", datetime.now(UTC) - timedelta(hours=1)
            )
            if len(log) == n or datetime.now(UTC) > deadline:
                break
            time.sleep(0.1)
        assert sorted(log["request_id"]) == sorted(f"rf-{i}" for i in range(n))
        expected = forest.estimator.predict(X.iloc[:n])
        by_id = dict(zip(log["request_id"], log["prediction"], strict=True))
        assert [by_id[f"rf-{i}"] for i in range(n)] == expected.tolist()


def test_linear_model_mixed_protocols_and_a_rejected_row(store: Store) -> None:
    """LogisticRegression (the float-matrix path): labels identical, probabilities to BLAS rounding; a
    row the model rejects fails alone (400), the requests merged with it are answered."""
    bc = store.bc
    X = bc.X
    bodies = [v2_body(X.iloc[[i]], f"lr-{i}") for i in range(48)]
    bad = records(X.iloc[[0]])
    bad[0]["mean radius"] = None  # no imputer in this pipeline: rejected_by_model
    with pair(store, bc) as (batched, plain):
        assert_unbatched_answers(batched, plain, bc.name, bodies)
        mixed = [{"dataframe_records": records(X.iloc[[i]])} for i in range(15)] + [{"dataframe_records": bad}]
        answers = concurrently(batched, mixed, "/invocations")
        assert answers[-1].status_code == 400 and answers[-1].json()["error_code"] == "BAD_REQUEST"
        assert [r.json()["predictions"][0] for r in answers[:-1]] == bc.estimator.predict(X.iloc[:15]).tolist()
        assert metric(batched, "ml_prediction_errors_total", error_type="rejected_by_model") == 1


def test_frame_path_with_strings_and_missing_values(store: Store) -> None:
    """Penguins (a ColumnTransformer on a DataFrame): requests with and without a missing integer value
    reach the model in different dtypes, so they are never merged together; answers are the unbatched ones."""
    penguins = store.penguins
    X = penguins.X.head(40).copy()
    X.loc[X.index[::3], "year"] = np.nan
    types = {"island": "BYTES", "sex": "BYTES", "year": "FP64"}
    bodies = [v2_body(X.iloc[[i]], f"p-{i}", types) for i in range(len(X))]
    with pair(store, penguins) as (batched, plain):
        assert_unbatched_answers(batched, plain, penguins.name, bodies)
        assert metric(batched, "modelops_batch_rows_count") < len(X)
