"""Property-based fuzzing of the request decoders (bounded, deterministic): /invocations, V2 JSON and binary.

For any body, headers and encoding: no 5xx, no unhandled exception, and metrics and the prediction log
agree with the response (one error count per 4xx; one latency count, one logged batch with the
response's id and one prediction per row per 200).
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.models import infer_signature
from palmerpenguins import load_penguins
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from starlette.testclient import TestClient

from modelops.contract import PROM_ERRORS, PROM_LATENCY, ServeConfig
from modelops_runtime.serve.app import create_app
from modelops_runtime.serve.limits import ServeLimits
from modelops_runtime.serve.metrics import ServerMetrics
from modelops_runtime.serve.model import LoadedModel, ModelMetadata, ModelState, ServedModel, example_batch
from modelops_runtime.serve.schema import ColumnSpec, InputSchema
from modelops_runtime.serve.service import InferenceService
from modelops_runtime.train.job import required_inputs

from .serve_support import PENGUIN_CATEGORICAL, PENGUIN_NUMERIC

pytestmark = pytest.mark.filterwarnings("ignore")
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
MODEL = "penguins"


class RecordingLog:
    """Stands in for the PredictionLogger: records each logged batch (request id, status, rows)."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, str, int]] = []

    def log_batch(self, *, request_id: str, status: str, predictions: np.ndarray, **_: Any) -> None:
        self.batches.append((request_id, status, len(predictions)))

    def log_feedback(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("no feedback in these tests")


class Harness:
    def __init__(self, client: TestClient, service: InferenceService, log: RecordingLog) -> None:
        self.client, self.service, self.log = client, service, log

    def counts(self) -> tuple[float, float]:
        registry = self.service.metrics.registry
        errors = sum(
            s.value
            for m in registry.collect()
            if m.name == PROM_ERRORS.removesuffix("_total")
            for s in m.samples
            if s.name == PROM_ERRORS
        )
        ok = registry.get_sample_value(f"{PROM_LATENCY}_count", {"model_name": MODEL, "model_version": "1.0.0"})
        return errors, ok or 0.0

    def check(self, method_path: str, content: bytes, headers: dict[str, str]) -> None:
        errors, ok = self.counts()
        logged = len(self.log.batches)
        response = self.client.post(method_path, content=content, headers=headers)
        assert response.status_code < 500, (response.status_code, response.text[:500])
        errors_after, ok_after = self.counts()
        new = self.log.batches[logged:]
        if response.status_code == 200:
            assert (errors_after, ok_after) == (errors, ok + 1)
            assert len(new) == 1
            request_id, status, rows = new[0]
            assert status == "ok" and unquote(response.headers["x-request-id"]) == request_id
            if "inference-header-content-length" not in response.headers:
                doc = response.json()
                answered = len(doc["predictions"]) if "predictions" in doc else doc["outputs"][0]["shape"][0]
                assert answered == rows and doc.get("id", request_id) == request_id
        else:
            assert 400 <= response.status_code < 500
            assert (errors_after, ok_after) == (errors + 1, ok) and not new


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    frame = load_penguins()
    X, y = frame.drop(columns=["species"]), frame["species"]
    pre = ColumnTransformer(
        [
            ("num", SimpleImputer(), PENGUIN_NUMERIC),
            (
                "cat",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                PENGUIN_CATEGORICAL,
            ),
        ]
    )
    estimator = make_pipeline(pre, LogisticRegression(max_iter=500)).fit(X, y)
    signature = required_inputs(infer_signature(X))
    schema = InputSchema([ColumnSpec(c.name, c.type.name, c.required) for c in signature.inputs.inputs])
    model = ServedModel(estimator, schema)
    batch, trusted = example_batch(schema, X.dropna().head(3))
    model.warm_up(batch, trusted_example=trusted)
    config = ServeConfig(model=MODEL, registry_version="1", version="1.0.0", stage="Production")
    state = ModelState(config.model_uri)
    state.loaded = LoadedModel(model, ModelMetadata("/nowhere", schema, "1", None, None, None))
    log = RecordingLog()
    metrics = ServerMetrics(MODEL, "1.0.0")
    limits = ServeLimits(max_body_bytes=256 * 1024, max_rows=200)
    service = InferenceService(config, state, metrics, log, limits)  # type: ignore[arg-type]
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        yield Harness(client, service, log)


# ------------------------------------------------------------------------------ strategies

NAMES = [*PENGUIN_NUMERIC, *PENGUIN_CATEGORICAL]
name = st.one_of(st.sampled_from(NAMES), st.text(max_size=8))
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["Biscoe", "Dream", "male", "female", "3.5", "1e999", "nan", ""]),
    st.text(max_size=6),
)
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(name, inner, max_size=4)),
    max_leaves=20,
)
datatype = st.one_of(
    st.sampled_from(["FP64", "FP32", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES"]), st.text(max_size=5)
)
shape = st.lists(st.integers(min_value=-2, max_value=5), min_size=0, max_size=3)


def column_values(n: int) -> st.SearchStrategy[list[Any]]:
    return st.lists(scalar, min_size=n, max_size=n)


def valid_value(column: str) -> st.SearchStrategy[Any]:
    """Values the column accepts (missing ones included), so that many fuzzed requests succeed."""
    if column in PENGUIN_CATEGORICAL:
        text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
        return st.one_of(st.none(), st.sampled_from(["Biscoe", "Dream", "Torgersen", "male", "female"]), text)
    return st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6), st.integers(-3000, 3000))


def values(column: str, n: int, corrupt: bool) -> st.SearchStrategy[list[Any]]:
    """Valid values for ``column``, or anything when ``corrupt``."""
    return column_values(n) if corrupt else st.lists(valid_value(column), min_size=n, max_size=n)


@st.composite
def v2_tensor(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=0, max_value=4))
    tensor: dict[str, Any] = {
        "name": draw(name),
        "datatype": draw(datatype),
        "shape": draw(st.one_of(st.just([n]), st.just([n, 1]), shape)),
        "data": draw(st.one_of(column_values(n), st.lists(json_value, max_size=5), json_value)),
    }
    if draw(st.booleans()):
        tensor["parameters"] = draw(
            st.one_of(st.dictionaries(st.sampled_from(["columns", "binary_data_size", "x"]), json_value), json_value)
        )
    for key in draw(st.lists(st.sampled_from(["name", "datatype", "shape", "data"]), max_size=1)):
        tensor.pop(key, None)
    return tensor


@st.composite
def v2_body(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):  # a complete, mostly valid column-wise request
        n = draw(st.integers(min_value=1, max_value=3))
        corrupt = draw(st.sampled_from([None, None, *NAMES]))
        inputs = [
            {
                "name": c,
                "datatype": "BYTES" if c in PENGUIN_CATEGORICAL else "FP64",
                "shape": [n],
                "data": draw(values(c, n, c == corrupt)),
            }
            for c in NAMES
            if c != "year" or draw(st.integers(0, 9))  # sometimes a column is absent
        ]
    else:
        inputs = draw(st.lists(v2_tensor(), min_size=0, max_size=8))
    body: dict[str, Any] = {"inputs": inputs}
    if draw(st.booleans()):
        body["id"] = draw(st.one_of(st.text(max_size=12), st.text(max_size=12), json_value))
    if draw(st.booleans()):
        body["outputs"] = draw(
            st.lists(st.fixed_dictionaries({"name": st.sampled_from(["predict", "predict_proba", "x"])}), max_size=3)
        )
    if draw(st.booleans()):
        body["parameters"] = draw(st.dictionaries(st.sampled_from(["binary_data_output", "columns"]), json_value))
    return body


def encode(draw: st.DrawFn, raw: bytes, headers: dict[str, str]) -> bytes:
    """``raw`` as is (mostly), or gzip/deflate-compressed, sometimes with a wrong or unknown Content-Encoding."""
    encoding = draw(st.sampled_from(["none", "none", "none", "identity", "gzip", "deflate", "br"]))
    if encoding == "none":
        return raw
    headers["content-encoding"] = encoding
    corrupt = draw(st.integers(0, 4)) == 0
    if encoding == "gzip" and not corrupt:
        return gzip.compress(raw)
    if encoding == "deflate" and not corrupt:
        return zlib.compress(raw)
    return raw


@st.composite
def v2_request(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        headers["x-request-id"] = draw(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=8))
    raw = json.dumps(draw(v2_body())).encode()
    return encode(draw, raw, headers), headers


@st.composite
def binary_request(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    n = draw(st.integers(min_value=0, max_value=3))
    inputs, chunks = [], []
    for column in NAMES:
        if column in PENGUIN_CATEGORICAL:
            values = draw(st.lists(st.binary(max_size=6), min_size=n, max_size=n))
            data = b"".join(struct.pack("<I", len(v)) + v for v in values)
            dtype = "BYTES"
        else:
            dtype = draw(st.sampled_from(["FP64", "FP32", "FP16", "INT64", "INT8", "BOOL"]))
            data = draw(st.binary(min_size=0, max_size=8 * n + 2))
        size = draw(st.one_of(st.just(len(data)), st.integers(min_value=-1, max_value=40)))
        inputs.append({"name": column, "datatype": dtype, "shape": [n], "parameters": {"binary_data_size": size}})
        chunks.append(data)
    outputs = [{"name": "predict", "parameters": {"binary_data": draw(st.booleans())}}]
    head = json.dumps({"inputs": inputs, "outputs": outputs}).encode()
    body = head + b"".join(chunks)
    length = draw(
        st.one_of(
            st.just(str(len(head))),
            st.integers(min_value=-5, max_value=len(body) + 5).map(str),
            # Any ASCII text (Starlette's TestClient re-encodes other header bytes as UTF-8, so Latin-1
            # digits such as '²' are sent to a real server in test_serve_clients instead).
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=4),
        )
    )
    headers = {"inference-header-content-length": length, "content-type": "application/octet-stream"}
    return encode(draw, body, headers), headers


@st.composite
def invocations_request(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    headers = {"content-type": draw(st.sampled_from(["application/json", "text/csv", "text/plain", ""]))}
    if headers["content-type"] == "text/csv":
        header = draw(st.lists(st.one_of(st.sampled_from(NAMES), st.text(max_size=4)), max_size=9))
        cell = st.one_of(st.text(max_size=5), st.floats(allow_nan=True).map(str), st.sampled_from(["NA", "Dream"]))
        rows = draw(st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), max_size=4))
        text = "\n".join(",".join(r) for r in [header, *rows])
        if draw(st.booleans()):
            text = pd.DataFrame(
                [[draw(valid_value(c)) for c in NAMES] for _ in range(draw(st.integers(1, 3)))], columns=NAMES
            ).to_csv(index=False)
        raw = text.encode()
    else:
        n = draw(st.integers(min_value=0, max_value=3))
        record = st.fixed_dictionaries({c: valid_value(c) for c in NAMES}, optional={"x": scalar})
        payload = draw(
            st.one_of(
                st.fixed_dictionaries({"dataframe_records": st.lists(record, min_size=n, max_size=n)}),
                st.fixed_dictionaries(
                    {
                        "dataframe_split": st.fixed_dictionaries(
                            {
                                "columns": st.just(NAMES),
                                "data": st.lists(st.tuples(*map(valid_value, NAMES)).map(list), max_size=3),
                            }
                        )
                    }
                ),
                st.dictionaries(
                    st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs", "params", "x"]),
                    json_value,
                    max_size=2,
                ),
                json_value,
            )
        )
        raw = json.dumps(payload).encode()
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            raw = draw(st.binary(max_size=30))
    return encode(draw, raw, headers), headers


# ----------------------------------------------------------------------------------- tests


@FUZZ
@given(request=v2_request())
def test_v2_json_decoder(harness: Harness, request: tuple[bytes, dict[str, str]]) -> None:
    harness.check(f"/v2/models/{MODEL}/infer", *request)


@FUZZ
@given(request=binary_request())
def test_v2_binary_decoder(harness: Harness, request: tuple[bytes, dict[str, str]]) -> None:
    harness.check(f"/v2/models/{MODEL}/infer", *request)


@FUZZ
@given(request=invocations_request())
def test_invocations_decoders(harness: Harness, request: tuple[bytes, dict[str, str]]) -> None:
    harness.check("/invocations", *request)


def test_the_generators_reach_success(harness: Harness) -> None:
    """The fuzzed requests above include successes, so the agreement checks of a 200 are exercised."""
    assert harness.counts()[1] > 0
