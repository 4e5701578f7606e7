"""Pure parsing of the model server: coercion rules, V2 and MLflow structures, error messages."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from modelops_runtime.serve import errors
from modelops_runtime.serve.model import IncompatibleModel, check_sklearn_version
from modelops_runtime.serve.protocol import parse_feedback, parse_invocations, parse_v2_infer
from modelops_runtime.serve.schema import ColumnSpec, InputSchema, convert_column

SCHEMA = InputSchema(
    [
        ColumnSpec("x", "double"),
        ColumnSpec("n", "long"),
        ColumnSpec("cat", "string"),
        ColumnSpec("flag", "boolean", required=False),
    ]
)
NUMERIC = InputSchema([ColumnSpec("a", "double"), ColumnSpec("b", "double"), ColumnSpec("k", "long")])


def v2(*inputs: dict, **extra: object) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def tensor(name: str, data: list, datatype: str = "FP64", shape: list[int] | None = None, **kw: object) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data, **kw}


# ------------------------------------------------------------------------------ coercion


@pytest.mark.parametrize(
    ("kind", "values", "expected"),
    [
        ("double", [1, 2.5, None], [1.0, 2.5, np.nan]),
        ("double", ["3.5", "-1e3", 2], [3.5, -1000.0, 2.0]),
        ("long", [2007, 2008], [2007, 2008]),
        ("long", [2007.0, None], [2007.0, np.nan]),
        ("long", ["12"], [12]),
        ("string", ["a", None, 3], ["a", np.nan, "3"]),
        ("boolean", [True, False], [True, False]),
    ],
)
def test_safe_coercions(kind: str, values: list, expected: list) -> None:
    out = convert_column(ColumnSpec("c", kind), values)
    assert len(out) == len(expected)
    for got, want in zip(out.tolist(), expected, strict=True):
        assert (pd.isna(got) and pd.isna(want)) or got == want


def test_complete_integer_columns_stay_int64() -> None:
    assert convert_column(ColumnSpec("c", "long"), [1, 2]).dtype == np.int64
    assert convert_column(ColumnSpec("c", "long"), [1, None]).dtype == np.float64


@pytest.mark.parametrize(
    ("kind", "values", "fragment"),
    [
        ("double", [True], "JSON boolean"),
        ("double", ["abc"], "non-numeric string 'abc'"),
        ("double", ["nan"], "non-numeric string 'nan'"),
        ("double", [""], "non-numeric string ''"),
        ("double", [[1]], "JSON array"),
        ("long", [2.5], "non-integral number 2.5"),
        ("long", ["2.5"], "non-integral"),
        ("string", [1.5], "JSON number"),
        ("string", [True], "JSON boolean"),
        ("boolean", [1], "JSON integer"),
        ("boolean", ["true"], "JSON string"),
    ],
)
def test_unsafe_values_are_rejected_naming_the_column(kind: str, values: list, fragment: str) -> None:
    with pytest.raises(errors.DatatypeError, match=fragment) as info:
        convert_column(ColumnSpec("col", kind), values)
    assert "'col'" in info.value.message and kind in info.value.message


def test_unsupported_signature_types_are_refused() -> None:
    with pytest.raises(ValueError, match="datetime"):
        InputSchema([ColumnSpec("when", "datetime")])


# ------------------------------------------------------------------------------------ V2


def test_v2_column_wise_by_name_in_any_order() -> None:
    body = v2(
        tensor("flag", [True, None], "BOOL"),
        tensor("cat", ["a", "b"], "BYTES"),
        tensor("n", [[1], [2]], "INT64", [2, 1]),
        tensor("x", [0.5, 1.5]),
        id="r1",
        outputs=[{"name": "predict"}],
    )
    request = parse_v2_infer(body, SCHEMA)
    assert request.id == "r1" and request.outputs == ("predict",)
    frame = request.batch.frame()
    assert list(frame.columns) == ["x", "n", "cat", "flag"]
    assert list(frame["n"]) == [1, 2] and frame["n"].dtype == np.int64
    assert list(frame["x"]) == [0.5, 1.5]


def test_v2_optional_column_may_be_absent() -> None:
    batch = parse_v2_infer(
        v2(tensor("x", [1.0]), tensor("n", [1], "INT64"), tensor("cat", ["a"], "BYTES")), SCHEMA
    ).batch
    assert np.isnan(batch.frame()["flag"].iloc[0])


def test_v2_row_wise_with_and_without_column_names() -> None:
    rows = [[1.0, 2.0, 3], [4.0, 5.0, 6]]
    positional = parse_v2_infer(v2(tensor("input-0", rows, "FP64", [2, 3])), NUMERIC).batch
    named = parse_v2_infer(
        v2(tensor("input-0", [[3, 2.0, 1.0], [6, 5.0, 4.0]], "FP64", [2, 3], parameters={"columns": ["k", "b", "a"]})),
        NUMERIC,
    ).batch
    flat = parse_v2_infer(v2(tensor("input-0", [1.0, 2.0, 3, 4.0, 5.0, 6], "FP64", [2, 3])), NUMERIC).batch
    for batch in (positional, named, flat):
        np.testing.assert_array_equal(batch.as_matrix(), np.array(rows, dtype=float))


def test_rows_may_omit_optional_columns() -> None:
    schema = InputSchema([ColumnSpec("a", "double"), ColumnSpec("b", "double", required=False)])
    matrix = schema.from_rows([[1.5], [2.5]], ["a"]).as_matrix()
    assert matrix[:, 0].tolist() == [1.5, 2.5] and np.isnan(matrix[:, 1]).all()


def test_v2_row_wise_bytes_with_numeric_strings() -> None:
    body = v2(tensor("rows", [["1.5", "7", "a", None]], "BYTES", [1, 4], parameters={"columns": list(SCHEMA.names)}))
    frame = parse_v2_infer(body, SCHEMA).batch.frame()
    assert frame["x"].iloc[0] == 1.5 and frame["n"].iloc[0] == 7 and frame["cat"].iloc[0] == "a"


@pytest.mark.parametrize(
    ("body", "error", "fragment"),
    [
        (b"{not json", errors.MalformedBody, "not valid JSON"),
        (b"[1, 2]", errors.MalformedBody, "JSON array; expected an object"),
        (b"", errors.MalformedBody, "empty"),
        (orjson.dumps({"inputs": []}), errors.MalformedBody, "'inputs' must be a non-empty array"),
        (orjson.dumps({"inputs": [{"name": "a"}]}), errors.MalformedBody, "needs a 'shape'"),
        (v2(tensor("a", [1.0], "FP8")), errors.MalformedBody, "datatype 'FP8'"),
        (v2(tensor("a", [1.0, 2.0], shape=[3])), errors.ShapeError, "holds 2 values"),
        (v2(tensor("a", [1.0]), tensor("b", [1.0, 2.0]), tensor("k", [1], "INT64")), errors.ShapeError, "lengths"),
        (v2(tensor("a", [1.0]), tensor("b", [1.0]), tensor("zz", [1.0])), errors.UnknownColumn, "'zz'"),
        (v2(tensor("a", [1.0]), tensor("b", [1.0])), errors.MissingColumn, "'k'"),
        (v2(tensor("a", ["x"]), tensor("b", [1.0]), tensor("k", [1], "INT64")), errors.DatatypeError, "declared FP64"),
        (v2(tensor("a", [1.0]), tensor("b", [1.0]), tensor("k", [1.5], "FP64")), errors.DatatypeError, "'k'"),
        (v2(tensor("a", [1.0]), tensor("b", [1.0]), tensor("k", [1.5], "INT64")), errors.DatatypeError, "INT64"),
        (v2(tensor("a", [1.0]), tensor("b", [1.0]), tensor("k", [1000], "INT8")), errors.DatatypeError, "INT8"),
        (
            v2(tensor("rows", [[1, 2, 300]], "UINT8", [1, 3]), parameters={"columns": ["a", "b", "k"]}),
            errors.DatatypeError,
            r"outside the UINT8 range \[0, 255\]",
        ),
        (v2(tensor("rows", [[1.0, 2.0]], "FP64", [1, 2])), errors.ShapeError, "parameters.columns"),
        (v2(tensor("a", [1.0]), tensor("a", [1.0])), errors.MalformedBody, "more than once"),
        (orjson.dumps({"inputs": [tensor("a", [1.0])], "id": 5}), errors.MalformedBody, "'id' must be a string"),
        # parameters that are not objects, falsy ones too (false, 0 and [] were taken as none)
        (v2(tensor("a", [1.0]), parameters=[]), errors.MalformedBody, "'parameters' must be an object"),
        (v2(tensor("a", [1.0], parameters=False)), errors.MalformedBody, "input 'a': 'parameters' must be"),
        (v2(tensor("a", [1.0]), outputs=[{"name": "predict", "parameters": 0}]), errors.MalformedBody, "output"),
        (
            v2(tensor("rows", [[1.0, 2.0, 3], [1.0]], "FP64", [2, 3]), parameters={"columns": ["a", "b", "k"]}),
            errors.ShapeError,
            "row 1 has 1 values",
        ),
    ],
)
def test_v2_bad_requests_name_the_problem(body: bytes, error: type[errors.ServeError], fragment: str) -> None:
    with pytest.raises(error, match=fragment) as info:
        parse_v2_infer(body, NUMERIC)
    assert 400 <= info.value.status < 500


# --------------------------------------------------------------------------------- MLflow


def invoke(doc: object, content_type: str = "application/json") -> np.ndarray:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return parse_invocations(body, content_type, NUMERIC).as_matrix()


def test_mlflow_formats_agree() -> None:
    expected = np.array([[1.0, 2.0, 3], [4.0, 5.0, 6]])
    records = [{"a": 1.0, "b": 2.0, "k": 3}, {"k": 6, "b": 5.0, "a": 4.0}]
    for doc in (
        {"dataframe_split": {"columns": ["b", "a", "k"], "data": [[2.0, 1.0, 3], [5.0, 4.0, 6]]}},
        {"dataframe_split": {"columns": ["a", "b", "k"], "data": [[1, 2, 3], [4, 5, 6]], "index": [0, 1]}},
        {"dataframe_records": records},
        {"instances": records},
        {"instances": [[1.0, 2.0, 3], [4.0, 5.0, 6]]},
        {"inputs": {"k": [3, 6], "a": [1.0, 4.0], "b": [2.0, 5.0]}},
        {"inputs": records, "params": {"ignored": True}},
    ):
        np.testing.assert_array_equal(invoke(doc), expected)
    np.testing.assert_array_equal(invoke(b"b,a,k\n2.0,1.0,3\n5,4,6\n", "text/csv; charset=utf-8"), expected)


def test_csv_missing_cells_are_missing_values() -> None:
    matrix = invoke(b"a,b,k\n1.0,,3\nNA,2,\n", "text/csv")
    assert np.isnan(matrix[0, 1]) and np.isnan(matrix[1, 0]) and np.isnan(matrix[1, 2])


@pytest.mark.parametrize(
    ("body", "content_type", "error", "fragment"),
    [
        (b"{", "application/json", errors.MalformedBody, "not valid JSON"),
        (
            orjson.dumps({"dataframe_split": {"data": [[1, 2, 3]]}}),
            "application/json",
            errors.MalformedBody,
            "needs 'columns'",
        ),
        (
            orjson.dumps({"dataframe_records": [{}], "inputs": {}}),
            "application/json",
            errors.MalformedBody,
            "exactly one of",
        ),
        (orjson.dumps({"data": [1]}), "application/json", errors.MalformedBody, "exactly one of"),
        (orjson.dumps({"dataframe_records": [1]}), "application/json", errors.MalformedBody, "record 0"),
        (orjson.dumps({"dataframe_records": [{"a": 1, "b": 2}]}), "application/json", errors.MissingColumn, "'k'"),
        (
            orjson.dumps({"dataframe_records": [{"a": 1, "b": 2, "k": 3, "q": 1}]}),
            "application/json",
            errors.UnknownColumn,
            "'q'",
        ),
        (orjson.dumps({"instances": [[1, 2]]}), "application/json", errors.ShapeError, "signature's order"),
        (orjson.dumps({"instances": [1, 2, 3]}), "application/json", errors.MalformedBody, "array of scalars"),
        (
            orjson.dumps({"inputs": {"a": [1], "b": [1, 2], "k": [1]}}),
            "application/json",
            errors.ShapeError,
            "different lengths",
        ),
        (b"a,b,k\n1,2\n", "text/csv", errors.ShapeError, "CSV row 1 has 2 fields"),
        (b"a,b,k\n1,x,3\n", "text/csv", errors.DatatypeError, "'b'"),
        (b"a,b,k\n1,2,3\n", "application/xml", errors.UnsupportedMediaType, "application/xml"),
        (b"a,b,k\n1,2,3\n", "text/csv; charset=latin-1", errors.UnsupportedMediaType, "UTF-8"),
    ],
)
def test_mlflow_bad_requests_name_the_problem(
    body: bytes, content_type: str, error: type[errors.ServeError], fragment: str
) -> None:
    with pytest.raises(error, match=fragment) as info:
        parse_invocations(body, content_type, NUMERIC)
    assert 400 <= info.value.status < 500


def test_error_bodies_follow_each_protocol() -> None:
    exc = errors.UnknownColumn("unknown column 'q'")
    assert orjson.loads(errors.v2_body(exc)) == {"error": "unknown column 'q'"}
    assert orjson.loads(errors.mlflow_body(exc)) == {"error_code": "BAD_REQUEST", "message": "unknown column 'q'"}
    assert errors.NotReady("x").status == 503 and errors.InternalError("x").status == 500


def test_feedback_parsing() -> None:
    assert parse_feedback(b'{"request_id": "a", "label": 1}') == [("a", 1)]
    items = parse_feedback(
        orjson.dumps({"feedback": [{"request_id": "a:0", "label": "x"}, {"request_id": "b", "label": True}]})
    )
    assert items == [("a:0", "x"), ("b", True)]
    with pytest.raises(errors.MalformedBody, match="request_id"):
        parse_feedback(b'{"label": 1}')
    with pytest.raises(errors.MalformedBody, match="scalar"):
        parse_feedback(b'{"request_id": "a", "label": [1]}')


def test_sklearn_version_must_match_exactly_unless_minor_is_chosen() -> None:
    check_sklearn_version("1.9.1", installed="1.9.1")
    with pytest.raises(IncompatibleModel, match=r"saved with 1\.9\.0, the server runs 1\.9\.1 \(the exact") as err:
        check_sklearn_version("1.9.0", installed="1.9.1")  # a patch release differs: refused by default
    assert err.value.reason == "FrameworkVersionMismatch"
    check_sklearn_version("1.9.0", installed="1.9.1", match="minor")  # the explicit opt-out
    with pytest.raises(IncompatibleModel, match=r"saved with 1\.8\.2, the server runs 1\.9\.1 \(major\.minor"):
        check_sklearn_version("1.8.2", installed="1.9.1", match="minor")
    with pytest.raises(IncompatibleModel, match="unparsable") as err:
        check_sklearn_version("not-a-version", installed="1.9.1")
    assert err.value.reason == "FrameworkVersionMismatch"
