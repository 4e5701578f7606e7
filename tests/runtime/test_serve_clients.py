"""The model server with the clients users really use: MLflow's, tritonclient and the kserve SDK (binary data)."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from mlflow.models import convert_input_example_to_serving_input
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

from modelops.contract import PROM_LATENCY, PROM_PREDICTIONS

from .serve_support import PENGUIN_CATEGORICAL, Running, Store, metric

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")


def _host_port(running: Running) -> tuple[str, int]:
    host, port = running.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _penguin_rows(store: Store) -> pd.DataFrame:
    X = store.penguins.X.iloc[[0, 3, 50, 200]].copy()  # row 3 has missing values
    X.iloc[1, X.columns.get_loc("sex")] = np.nan
    return X


# ------------------------------------------------------------------------------- MLflow


def test_mlflow_serialisers_and_scoring_client_with_missing_values(penguins: Running, store: Store) -> None:
    X = _penguin_rows(store)
    expected = store.penguins.estimator.predict(X).tolist()
    body = convert_input_example_to_serving_input(X)
    assert body is not None and "NaN" in body  # how MLflow writes a missing value
    response = penguins.client.post("/invocations", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == expected

    client = ScoringServerClient(*_host_port(penguins))
    client.wait_server_ready(timeout=10)
    predictions = client.invoke(X).get_predictions()
    assert list(predictions.iloc[:, 0]) == expected


# ------------------------------------------------------------------------------ Triton


def _triton_inputs(X: pd.DataFrame) -> list[triton.InferInput]:
    inputs = []
    for name, column in X.items():
        if name in PENGUIN_CATEGORICAL:
            values = np.array([b"" if pd.isna(v) else str(v).encode() for v in column], dtype=np.object_)
            tensor = triton.InferInput(str(name), [len(X)], "BYTES")
        else:
            values = column.to_numpy(dtype=np.float64)
            tensor = triton.InferInput(str(name), [len(X)], "FP64")
        tensor.set_data_from_numpy(values)  # binary data by default
        inputs.append(tensor)
    return inputs


def test_tritonclient_binary_inputs_and_outputs(penguins: Running, bc: Running, store: Store) -> None:
    X = store.bc.X.iloc[:6]
    client = triton.InferenceServerClient(url=bc.url.removeprefix("http://"))
    assert client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    before = metric(bc, f"{PROM_LATENCY}_count", model_name=store.bc.name, model_version="1.0.0")
    outputs = [triton.InferRequestedOutput("predict"), triton.InferRequestedOutput("predict_proba")]
    for compression in (None, "gzip", "deflate"):
        result = client.infer(
            store.bc.name, _triton_inputs(X), outputs=outputs, request_compression_algorithm=compression
        )
        assert result.as_numpy("predict").tolist() == store.bc.estimator.predict(X).tolist()
        np.testing.assert_allclose(result.as_numpy("predict_proba"), store.bc.estimator.predict_proba(X), rtol=1e-12)
    # No outputs named: tritonclient asks for all of them as binary data (binary_data_output).
    result = client.infer(store.bc.name, _triton_inputs(X))
    assert result.as_numpy("predict").tolist() == store.bc.estimator.predict(X).tolist()
    assert metric(bc, f"{PROM_LATENCY}_count", model_name=store.bc.name, model_version="1.0.0") == before + 4

    # BYTES inputs (an empty string is an unseen category, NaN in FP64 a missing value) and outputs.
    P = _penguin_rows(store)
    client = triton.InferenceServerClient(url=penguins.url.removeprefix("http://"))
    result = client.infer(store.penguins.name, _triton_inputs(P))
    labels = [v.decode() for v in result.as_numpy("predict").tolist()]
    expected = store.penguins.estimator.predict(P.replace({"sex": {np.nan: ""}})).tolist()
    assert labels == expected


def test_tritonclient_errors_are_4xx(bc: Running, store: Store) -> None:
    client = triton.InferenceServerClient(url=bc.url.removeprefix("http://"))
    inputs = _triton_inputs(store.bc.X.iloc[:2])[1:]  # a column is absent
    with pytest.raises(triton.InferenceServerException) as info:
        client.infer(store.bc.name, inputs)
    assert "missing required column" in str(info.value)
    # The classification extension (class_count) is not implemented: said so, not full probabilities.
    full = _triton_inputs(store.bc.X.iloc[:2])
    with pytest.raises(triton.InferenceServerException) as info:
        client.infer(store.bc.name, full, outputs=[triton.InferRequestedOutput("predict_proba", class_count=1)])
    assert "[400]" in str(info.value) and "parameters.classification" in str(info.value), str(info.value)


# ------------------------------------------------------------------------------- kserve


def _kserve_request(model: str, X: pd.DataFrame, binary_outputs: bool) -> InferRequest:
    inputs = []
    for name, column in X.items():
        tensor = InferInput(name=str(name), shape=[len(X)], datatype="FP64")
        tensor.set_data_from_numpy(column.to_numpy(dtype=np.float64), binary_data=True)
        inputs.append(tensor)
    outputs = [
        RequestedOutput("predict", {"binary_data": binary_outputs}),
        RequestedOutput("predict_proba", {"binary_data": binary_outputs}),
    ]
    return InferRequest(model_name=model, infer_inputs=inputs, request_outputs=outputs)


def test_kserve_rest_client_binary_inputs_and_outputs(bc: Running, store: Store) -> None:
    X = store.bc.X.iloc[10:15]
    before = metric(bc, PROM_PREDICTIONS, model_name=store.bc.name, model_version="1.0.0", prediction_class="1")

    async def run() -> list:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        try:
            assert await client.is_server_ready(bc.url)
            return [
                await client.infer(bc.url, _kserve_request(store.bc.name, X, binary), model_name=store.bc.name)
                for binary in (True, False)
            ]
        finally:
            await client._client.aclose()

    for response in asyncio.run(run()):
        by_name = {o.name: o for o in response.outputs}
        assert by_name["predict"].as_numpy().tolist() == store.bc.estimator.predict(X).tolist()
        np.testing.assert_allclose(by_name["predict_proba"].as_numpy(), store.bc.estimator.predict_proba(X), rtol=1e-12)
    ones = int((store.bc.estimator.predict(X) == 1).sum())
    after = metric(bc, PROM_PREDICTIONS, model_name=store.bc.name, model_version="1.0.0", prediction_class="1")
    assert after == before + 2 * ones


def test_binary_data_that_does_not_add_up_is_400(bc: Running, store: Store) -> None:
    X = store.bc.X.iloc[:1]
    request = _kserve_request(store.bc.name, X, binary_outputs=True)
    body, json_length = request.to_rest()
    assert isinstance(body, bytes) and json_length is not None
    url = f"/v2/models/{store.bc.name}/infer"
    for content, length in ((body[:-3], json_length), (body + b"xx", json_length), (body, len(body) + 5)):
        response = bc.client.post(url, content=content, headers={"inference-header-content-length": str(length)})
        assert response.status_code == 400, response.text
    # Header values are Latin-1: '²' and '³' are digits to str.isdigit() but not to int() (was a 500).
    for length in ("\xb2".encode("latin-1"), "1\xb3".encode("latin-1"), b"12 34"):
        response = bc.client.post(url, content=body, headers={"inference-header-content-length": length})
        assert response.status_code == 400 and "Inference-Header-Content-Length" in response.text, response.text
