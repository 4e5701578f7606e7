"""The model server over real HTTP: models from a sqlite MLflow store, uvicorn on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from modelops.contract import (
    ENV_JOB_CONFIG,
    ENV_PORT,
    ENV_TERMINATION_LOG,
    LOG_COLUMNS,
    LOG_FEATURE_PREFIX,
    PROM_ERRORS,
    PROM_LATENCY,
    PROM_PREDICTIONS,
    ServeConfig,
    parse_ready_refusal,
    parse_refusal,
    prediction_log_partition,
)
from modelops.monitoring.prediction_log import read_feedback, read_prediction_log
from modelops_runtime.serve.main import main as serve_main

from .serve_support import (
    LIVENESS_SECONDS,
    Registered,
    Running,
    Store,
    config_for,
    free_port,
    metric,
    next_patch_release,
    records,
    serving,
    use_store,
    v2_columns,
    wait_for_log,
)

HOUR = timedelta(hours=1)


@pytest.fixture(autouse=True)
def _store_uri(store: Store) -> None:
    """Every test of this module talks to the module's store: tests/conftest.py resets the
    process-wide MLflow URIs after each test, and a server started without one would load from (and
    create) MLflow's default ./mlflow.db."""
    use_store(store)


# The server passes all-numeric inputs as an ndarray in the fitted column order and filters this
# warning process-wide; pytest resets warning filters per test, so it would reappear here.
pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


# ------------------------------------------------------------------------------- health


def test_health_and_metadata(bc: Running, store: Store) -> None:
    c = bc.client
    assert c.get("/v2/health/live").json() == {"live": True}
    assert c.get("/v2/health/ready").json() == {"ready": True}
    assert c.get("/v2").json()["name"] == "modelops"
    assert c.get("/ping").status_code == 200 and c.get("/health").status_code == 200
    assert c.get("/version").text == mlflow.__version__
    assert c.get(f"/v2/models/{store.bc.name}/ready").json() == {"name": store.bc.name, "ready": True}
    meta = c.get(f"/v2/models/{store.bc.name}").json()
    assert meta["versions"] == ["1.0.0"]
    assert [i["name"] for i in meta["inputs"]] == list(store.bc.X.columns)
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict_proba"]["shape"] == [-1, 2] and outputs["predict_proba"]["parameters"]["classes"] == [0, 1]
    assert meta["parameters"]["registry_version"] == store.bc.version
    assert c.get(f"/v2/models/{store.bc.name}/versions/1.0.0").status_code == 200
    missing = c.get("/v2/models/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


# ---------------------------------------------------------------------------------- V2


def test_v2_column_wise_matches_in_process_predictions(bc: Running, store: Store) -> None:
    X = store.bc.X.iloc[:5]
    expected = store.bc.estimator.predict(X)
    expected_proba = store.bc.estimator.predict_proba(X)
    shuffled = X[list(reversed(X.columns))]
    response = bc.client.post(f"/v2/models/{store.bc.name}/infer", json={"id": "req-1", "inputs": v2_columns(shuffled)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-1" and response.headers["x-request-id"] == "req-1"
    assert body["model_name"] == store.bc.name and body["model_version"] == "1.0.0"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["predict"]["data"] == expected.tolist() and outputs["predict"]["shape"] == [5]
    assert outputs["predict_proba"]["shape"] == [5, 2]
    np.testing.assert_allclose(np.array(outputs["predict_proba"]["data"]).reshape(5, 2), expected_proba, rtol=1e-12)


def test_v2_row_wise_named_positional_and_versions(bc: Running, store: Store) -> None:
    X = store.bc.X.iloc[10:14]
    expected = store.bc.estimator.predict(X).tolist()
    columns = list(X.columns)[::-1]
    named = {
        "inputs": [
            {
                "name": "rows",
                "datatype": "FP64",
                "shape": [4, 30],
                "data": X[columns].to_numpy().tolist(),
                "parameters": {"columns": columns},
            }
        ]
    }
    positional = {
        "inputs": [{"name": "rows", "datatype": "FP64", "shape": [4, 30], "data": X.to_numpy().ravel().tolist()}]
    }
    for path in (
        f"/v2/models/{store.bc.name}/infer",
        f"/v2/models/{store.bc.name}/versions/1.0.0/infer",
        f"/v2/models/{store.bc.name}/versions/{store.bc.version}/infer",
    ):
        for body in (named, positional):
            response = bc.client.post(path, json=body)
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == expected
    wrong = bc.client.post(f"/v2/models/{store.bc.name}/versions/9.9.9/infer", json=named)
    assert wrong.status_code == 404 and "9.9.9" in wrong.json()["error"]
    only_predict = bc.client.post(
        f"/v2/models/{store.bc.name}/infer", json={**named, "outputs": [{"name": "predict"}]}
    ).json()
    assert [o["name"] for o in only_predict["outputs"]] == ["predict"]


# ------------------------------------------------------------------------------ MLflow


def test_invocations_every_format_agrees(bc: Running, store: Store) -> None:
    X = store.bc.X.iloc[20:23]
    expected = {"predictions": store.bc.estimator.predict(X).tolist()}
    shuffled = X[sorted(X.columns)]
    bodies = [
        {"dataframe_split": {"columns": list(shuffled.columns), "data": shuffled.to_numpy().tolist()}},
        {"dataframe_split": shuffled.to_dict(orient="split")},
        {"dataframe_records": records(shuffled)},
        {"instances": records(shuffled)},
        {"instances": X.to_numpy().tolist()},
        {"inputs": {k: v.tolist() for k, v in shuffled.items()}},
        {"inputs": records(X)},
    ]
    for body in bodies:
        response = bc.client.post("/invocations", json=body)
        assert response.status_code == 200, (body, response.text)
        assert response.json() == expected
    csv = bc.client.post("/invocations", content=shuffled.to_csv(index=False), headers={"content-type": "text/csv"})
    assert csv.status_code == 200 and csv.json() == expected


def test_missing_values_and_unseen_categories(penguins: Running, store: Store) -> None:
    X = store.penguins.X.iloc[[0, 3, 50, 200]].copy()  # row 3 has missing values in the data set
    X.iloc[0, X.columns.get_loc("island")] = "Atlantis"  # never seen in training
    X.iloc[2, X.columns.get_loc("sex")] = np.nan
    X.iloc[2, X.columns.get_loc("flipper_length_mm")] = np.nan
    expected = store.penguins.estimator.predict(X).tolist()
    assert X.isna().any().any()

    mlflow_style = penguins.client.post("/invocations", json={"dataframe_records": records(X)})
    assert mlflow_style.status_code == 200, mlflow_style.text
    assert mlflow_style.json()["predictions"] == expected

    types = {"island": "BYTES", "sex": "BYTES", "year": "INT64"}
    v2 = penguins.client.post(f"/v2/models/{store.penguins.name}/infer", json={"inputs": v2_columns(X, types)})
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert outputs["predict"]["datatype"] == "BYTES" and outputs["predict"]["data"] == expected
    assert outputs["predict_proba"]["parameters"]["classes"] == ["Adelie", "Chinstrap", "Gentoo"]

    as_strings = [[None if pd.isna(v) else str(v) for v in row] for row in X.itertuples(index=False)]
    row_wise = {
        "inputs": [
            {
                "name": "rows",
                "datatype": "BYTES",
                "shape": list(X.shape),
                "data": as_strings,
                "parameters": {"columns": list(X.columns)},
            }
        ]
    }
    response = penguins.client.post(f"/v2/models/{store.penguins.name}/infer", json=row_wise)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == expected

    csv = penguins.client.post("/invocations", content=X.to_csv(index=False), headers={"content-type": "text/csv"})
    assert csv.status_code == 200 and csv.json()["predictions"] == expected


# --------------------------------------------------------------------------- bad inputs

ROW = {"mean radius": 17.99}


@pytest.mark.parametrize(
    ("case", "error_type", "fragment"),
    [
        ("malformed_json", "malformed_request", "not valid JSON"),
        ("no_inputs", "malformed_request", "'inputs'"),
        ("wrong_shape", "wrong_shape", "holds 2 values"),
        ("unknown_column", "unknown_column", "'bogus'"),
        ("missing_column", "missing_column", "'mean radius'"),
        ("wrong_datatype", "wrong_datatype", "'mean texture'"),
        ("declared_mismatch", "wrong_datatype", "declared INT64"),
        ("model_rejects_nan", "rejected_by_model", "NaN"),
        ("unknown_output", "invalid_input", "'logits'"),
    ],
)
def test_v2_bad_inputs_are_4xx_naming_the_problem(
    bc: Running, store: Store, case: str, error_type: str, fragment: str
) -> None:
    X = store.bc.X.iloc[:1]
    inputs = v2_columns(X)
    body: Any
    if case == "malformed_json":
        body = b'{"inputs": [}'
    elif case == "no_inputs":
        body = {"id": "x"}
    elif case == "wrong_shape":
        inputs[0]["data"] = [1.0, 2.0]
        body = {"inputs": inputs}
    elif case == "unknown_column":
        body = {"inputs": [*inputs, {"name": "bogus", "datatype": "FP64", "shape": [1], "data": [1.0]}]}
    elif case == "missing_column":
        body = {"inputs": inputs[1:]}
    elif case == "wrong_datatype":
        inputs[1] = {"name": "mean texture", "datatype": "BYTES", "shape": [1], "data": ["soft"]}
        body = {"inputs": inputs}
    elif case == "declared_mismatch":
        inputs[1]["datatype"] = "INT64"
        body = {"inputs": inputs}
    elif case == "model_rejects_nan":  # LogisticRegression without an imputer cannot take a missing value
        inputs[1]["data"] = [None]
        body = {"inputs": inputs}
    else:
        body = {"inputs": inputs, "outputs": [{"name": "logits"}]}
    before = metric(bc, PROM_ERRORS, model_name=store.bc.name, error_type=error_type)
    path = f"/v2/models/{store.bc.name}/infer"
    response = bc.client.post(path, content=body) if isinstance(body, bytes) else bc.client.post(path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert fragment in response.json()["error"]
    assert metric(bc, PROM_ERRORS, model_name=store.bc.name, error_type=error_type) == before + 1


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("INT8", 1000), ("INT16", 70000), ("UINT8", -1), ("UINT64", -1), ("INT64", 2**64 - 1), ("FP16", 1e10),
     ("FP32", 1e39), ("FP16", 70000)],
)  # fmt: skip
def test_v2_values_outside_the_declared_datatype_are_400_naming_input_and_datatype(
    bc: Running, store: Store, datatype: str, value: float
) -> None:
    """docs/serving.md: the data must hold what the datatype says; the binary form cannot hold more."""
    inputs = v2_columns(store.bc.X.iloc[:1])
    inputs[1].update(datatype=datatype, data=[value])
    path = f"/v2/models/{store.bc.name}/infer"
    before = metric(bc, PROM_ERRORS, model_name=store.bc.name, error_type="wrong_datatype")
    response = bc.client.post(path, json={"inputs": inputs})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert f"'{inputs[1]['name']}'" in error and f"{datatype}" in error and "range" in error, error
    assert metric(bc, PROM_ERRORS, model_name=store.bc.name, error_type="wrong_datatype") == before + 1
    inputs[1]["data"] = [100]  # within every one of these datatypes: served
    assert bc.client.post(path, json={"inputs": inputs}).status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        (b"{nope", "application/json", 400, "not valid JSON"),
        (b'{"dataframe_split": {"data": [[1]]}}', "application/json", 400, "needs 'columns'"),
        (b'{"dataframe_records": [{"bogus": 1}]}', "application/json", 400, "'bogus'"),
        (b'{"dataframe_records": [{"mean radius": 1}]}', "application/json", 400, "missing required columns"),
        (b'{"instances": [[1, 2, 3]]}', "application/json", 400, "need 30 values"),
        (b"mean radius\n1\n", "text/plain", 415, "text/plain"),
    ],
)
def test_invocations_bad_inputs_use_mlflow_error_bodies(
    bc: Running, body: bytes, content_type: str, status: int, fragment: str
) -> None:
    response = bc.client.post("/invocations", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    doc = response.json()
    assert doc["error_code"] == "BAD_REQUEST" and fragment in doc["message"]


def test_invocations_wrong_datatype_names_the_column(penguins: Running, store: Store) -> None:
    row = records(store.penguins.X.iloc[:1])[0]
    row["year"] = 2007.5
    response = penguins.client.post("/invocations", json={"dataframe_records": [row]})
    assert response.status_code == 400 and "'year'" in response.json()["message"]


def test_server_fault_is_500_counted_and_logged(bc: Running, store: Store) -> None:
    model = bc.server.service.state.loaded.model  # type: ignore[union-attr]
    original = model.estimator

    class Broken:
        def predict_proba(self, X: Any) -> Any:
            raise RuntimeError("disk on fire")

        predict = predict_proba

    before = metric(bc, PROM_ERRORS, model_name=store.bc.name, error_type="internal")
    model.estimator = Broken()
    try:
        response = bc.client.post(
            "/invocations", json={"dataframe_records": records(store.bc.X.iloc[:1])}, headers={"x-request-id": "boom"}
        )
    finally:
        model.estimator = original
    assert response.status_code == 500
    assert response.json()["error_code"] == "INTERNAL_ERROR" and "disk on fire" not in response.text
    assert metric(bc, PROM_ERRORS, model_name=store.bc.name, error_type="internal") == before + 1
    log = wait_for_log(store, store.bc.name, "Production", lambda f: "boom" in set(f["request_id"]))
    row = log[log["request_id"] == "boom"].iloc[0]
    assert row["status"] == "error" and pd.isna(row["prediction"])


# ------------------------------------------------------------------- metrics and the log


def test_metrics_count_predictions_by_class_and_latency(bc: Running, store: Store) -> None:
    X = store.bc.X.iloc[:40]
    counts = pd.Series(store.bc.estimator.predict(X)).value_counts()
    before = {
        cls: metric(bc, PROM_PREDICTIONS, model_name=store.bc.name, model_version="1.0.0", prediction_class=str(cls))
        for cls in (0, 1)
    }
    latency_before = metric(bc, f"{PROM_LATENCY}_count", model_name=store.bc.name, model_version="1.0.0")
    response = bc.client.post("/invocations", json={"dataframe_records": records(X)})
    assert response.status_code == 200
    for cls in (0, 1):
        after = metric(bc, PROM_PREDICTIONS, model_name=store.bc.name, model_version="1.0.0", prediction_class=str(cls))
        assert after == before[cls] + counts.get(cls, 0)
    assert metric(bc, f"{PROM_LATENCY}_count", model_name=store.bc.name, model_version="1.0.0") == latency_before + 1
    text = bc.client.get("/metrics").text
    assert f'{PROM_LATENCY}_bucket{{le="5e-05",model_name="{store.bc.name}",model_version="1.0.0"}}' in text
    assert "process_resident_memory_bytes" in text


def test_prediction_log_partition_columns_and_feedback(bc: Running, store: Store) -> None:
    X = store.bc.X.iloc[100:103]
    response = bc.client.post(
        "/invocations", json={"dataframe_records": records(X)}, headers={"x-request-id": "batch-7"}
    )
    assert response.status_code == 200 and response.headers["x-request-id"] == "batch-7"
    single = bc.client.post(f"/v2/models/{store.bc.name}/infer", json={"id": "one-1", "inputs": v2_columns(X.iloc[:1])})
    assert single.status_code == 200
    ids = {"batch-7:0", "batch-7:1", "batch-7:2", "one-1"}
    log = wait_for_log(store, store.bc.name, "Production", lambda f: ids <= set(f["request_id"]))
    assert tuple(log.columns[: len(LOG_COLUMNS)]) == LOG_COLUMNS
    assert {LOG_FEATURE_PREFIX + c for c in X.columns} <= set(log.columns)
    rows = log.set_index("request_id").loc[["batch-7:0", "batch-7:1", "batch-7:2"]]
    assert rows["prediction"].tolist() == store.bc.estimator.predict(X).tolist()
    np.testing.assert_allclose(rows["probability"], store.bc.estimator.predict_proba(X).max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(rows[LOG_FEATURE_PREFIX + "mean radius"], X["mean radius"])
    assert set(rows["model_version"]) == {"1.0.0"} and set(rows["registry_version"]) == {store.bc.version}
    assert (rows["latency_ms"] > 0).all() and set(rows["status"]) == {"ok"}
    day = rows["timestamp"].iloc[0].date()  # the rows' own UTC day, not this test's clock (a midnight later)
    partition = Path(prediction_log_partition(str(store.root / "log"), store.bc.name, "Production", day))
    assert any(partition.glob("*.parquet"))

    feedback = bc.client.post(
        f"/v2/models/{store.bc.name}/feedback",
        json={"feedback": [{"request_id": "batch-7:0", "label": 1}, {"request_id": "one-1", "label": 0}]},
    )
    assert feedback.status_code == 200 and feedback.json() == {"accepted": 2}
    assert bc.client.post("/feedback", json={"request_id": "batch-7:1", "label": 0}).status_code == 200
    assert bc.client.post("/feedback", json={"label": 0}).status_code == 400
    deadline = time.monotonic() + LIVENESS_SECONDS
    while True:
        labels = read_feedback(str(store.root / "log"), store.bc.name, "Production", datetime.now(UTC) - HOUR)
        if len(labels) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert dict(zip(labels["request_id"], labels["label"], strict=True)) == {"batch-7:0": 1, "one-1": 0, "batch-7:1": 0}


# ------------------------------------------------------------------------ not ready


def test_sklearn_version_mismatch_is_not_ready_with_the_reason(store: Store) -> None:
    with serving(config_for(store.old)) as running:
        deadline = time.monotonic() + LIVENESS_SECONDS
        while running.server.service.state.phase == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = running.client.get("/v2/health/ready")
        assert ready.status_code == 503
        reason = ready.json()["error"]
        assert "scikit-learn version mismatch" in reason and "0.24.2" in reason
        assert running.client.get("/v2/health/live").status_code == 200  # the process keeps running
        assert running.client.get("/ping").status_code == 503
        assert running.client.get(f"/v2/models/{store.old.name}/ready").status_code == 503
        infer = running.client.post(f"/v2/models/{store.old.name}/infer", json={"inputs": []})
        assert infer.status_code == 503 and "0.24.2" in infer.json()["error"]
        invocations = running.client.post("/invocations", json={"dataframe_records": [ROW]})
        assert invocations.status_code == 503 and invocations.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"


def test_unknown_model_keeps_retrying_not_ready(store: Store) -> None:
    config = ServeConfig(model="missing", registry_version="3", version="1.0.0", stage="Production")
    with serving(config) as running:
        deadline = time.monotonic() + LIVENESS_SECONDS
        while "attempt" not in running.server.service.state.reason and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = running.client.get("/v2/health/ready")
        assert ready.status_code == 503 and "models:/missing/3" in ready.json()["error"]
        assert "retrying" in ready.json()["error"]
        assert running.client.get("/v2/health/live").status_code == 200


# ------------------------------------------------------------------ the real command


@contextmanager
def serve_command(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``modelops-runtime serve`` on 127.0.0.1 with ``env``; killed on exit if it still runs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelops_runtime", "serve", "--host", "127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_ready_answer(
    proc: subprocess.Popen[str], url: str, wanted: Callable[[httpx.Response], bool], timeout: float = LIVENESS_SECONDS
) -> httpx.Response:
    """Poll ``/v2/health/ready`` until its answer is ``wanted``; fails if the process ends first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ready = httpx.get(f"{url}/v2/health/ready", timeout=1)
            if wanted(ready):
                return ready
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "no wanted answer from /v2/health/ready"
        time.sleep(0.2)


def test_serve_command_end_to_end_with_sigterm_flush(store: Store, tmp_path: Path) -> None:
    port = free_port()
    log_dir = tmp_path / "log"
    config = config_for(store.bc, stage="Staging", prediction_log_uri=str(log_dir), log_flush_seconds=3600)
    env = {
        **os.environ,
        ENV_JOB_CONFIG: config.to_env(),
        ENV_PORT: str(port),
        "MLFLOW_TRACKING_URI": store.uri,
        "POD_NAME": "serve-pod-0",
    }
    url = f"http://127.0.0.1:{port}"
    with serve_command(env) as proc:
        wait_for_ready_answer(proc, url, lambda ready: ready.status_code == 200)
        X = store.bc.X.iloc[:2]
        response = httpx.post(f"{url}/invocations", json={"dataframe_records": records(X)}, timeout=10)
        assert response.json() == {"predictions": store.bc.estimator.predict(X).tolist()}
        proc.send_signal(signal.SIGTERM)
        # uvicorn drains, runs the lifespan shutdown (our log flush), then re-raises the signal.
        assert proc.wait(30) in (0, -signal.SIGTERM)
    files = list(log_dir.rglob("*.parquet"))  # flush_seconds is an hour: only the SIGTERM flush wrote these
    assert len(files) == 1 and files[0].name.startswith("serve-pod-0-")
    log = read_prediction_log(str(log_dir), store.bc.name, "Staging", datetime.now(UTC) - HOUR)
    assert len(log) == 2


def test_serve_command_refusing_its_model_stays_up_not_ready_with_the_reason(store: Store, tmp_path: Path) -> None:
    """A model saved with another scikit-learn patch release: refused by default (exact match). The
    process stays up (no crash loop in a pod): live, not ready with the refusal on /v2/health/ready,
    infer 503 with the reason, /metrics served; the reason is also written where Kubernetes reads
    the termination message. Served with the explicit opt-out (major.minor)."""
    import sklearn

    other_patch, patched = next_patch_release(), store.other_patch
    termination_log = tmp_path / "termination-log"
    termination_log.write_text("")
    port = free_port()
    env = {
        **os.environ,
        ENV_JOB_CONFIG: config_for(patched).to_env(),
        ENV_PORT: str(port),
        ENV_TERMINATION_LOG: str(termination_log),
        "MLFLOW_TRACKING_URI": store.uri,
    }
    expected = (
        "FrameworkVersionMismatch",
        f"scikit-learn version mismatch: the model was saved with {other_patch}, the server runs {sklearn.__version__} "
        f"(the exact version must match (framework version match: exact)); serve it with an image that has "
        f"scikit-learn {other_patch} or retrain it",
    )
    url = f"http://127.0.0.1:{port}"
    with serve_command(env) as proc:
        ready = wait_for_ready_answer(proc, url, lambda ready: parse_ready_refusal(ready.content) is not None)
        assert ready.status_code == 503 and parse_ready_refusal(ready.content) == expected
        assert parse_refusal(termination_log.read_text()) == expected
        assert httpx.get(f"{url}/v2/health/live", timeout=5).status_code == 200
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 200
        infer = httpx.post(f"{url}/invocations", json={"dataframe_records": records(patched.X.iloc[:1])}, timeout=5)
        assert infer.status_code == 503 and "FrameworkVersionMismatch" in infer.json()["message"]
        assert proc.poll() is None  # still up: not a crash loop
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, -signal.SIGTERM)
    with serving(config_for(patched, framework_version_match="minor")) as running:
        running.wait_ready()
        X = patched.X.iloc[:2]
        response = running.client.post("/invocations", json={"dataframe_records": records(X)})
        assert response.json() == {"predictions": patched.estimator.predict(X).tolist()}


def test_serve_command_rejects_missing_or_invalid_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_JOB_CONFIG, raising=False)
    assert serve_main([]) == 2
    monkeypatch.setenv(ENV_JOB_CONFIG, '{"model": "m"}')
    assert serve_main([]) == 2
    monkeypatch.setenv(ENV_JOB_CONFIG, config_for(Registered("m", "1", None, pd.DataFrame())).to_env())
    monkeypatch.setenv(ENV_PORT, "eighty")
    assert serve_main([]) == 2
