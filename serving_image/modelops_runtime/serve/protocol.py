"""Wire formats of the model server: parsing requests and encoding responses. Pure, no web framework.

Two protocols share one model:

* the **Open Inference Protocol (V2)**, as KServe and Triton speak it
  (https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/), and
* the **MLflow scoring server** formats of ``POST /invocations`` (``dataframe_split``,
  ``dataframe_records``, ``instances``, ``inputs`` in JSON, and CSV), so the server is a drop-in
  for ``mlflow models serve``.

Every parser returns a :class:`~.schema.Batch` (typed columns in the signature's order) or raises
a :class:`~.errors.ServeError` whose message names the problem. See ``docs/serving.md``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson

from .errors import DatatypeError, InputError, MalformedBody, ShapeError, UnsupportedMediaType
from .schema import Batch, InputSchema, json_type_name
from .wire import OUTPUT_PREDICT

_NONE = type(None)
_INT = frozenset({int, _NONE})
#: Python types a V2 tensor of each datatype may hold after JSON parsing (null = missing value).
V2_ALLOWED_TYPES: dict[str, frozenset[type]] = {
    "BOOL": frozenset({bool, _NONE}),
    **{f"{p}INT{b}": _INT for p in ("", "U") for b in (8, 16, 32, 64)},
    **{f"FP{b}": frozenset({int, float, _NONE}) for b in (16, 32, 64)},
    "BYTES": frozenset({str, _NONE}),
}
#: Open Inference Protocol extensions this server implements (``GET /v2``).
V2_EXTENSIONS = ("binary_tensor_data",)
OUTPUT_PROBA = "predict_proba"

#: MLflow scoring formats (exactly one per request).
MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
#: CSV cells read as a missing value (as pandas.read_csv does).
CSV_MISSING = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"})


@dataclass
class Prediction:
    """Model output for a batch.

    Attributes:
        predict: ``(n,)`` predicted labels (classifier) or values (regressor).
        proba: ``(n, n_classes)`` class probabilities, or None when not computed/available.
    """

    predict: np.ndarray
    proba: np.ndarray | None = None


@dataclass
class V2Request:
    """A parsed V2 infer request.

    Attributes:
        binary_default: the request's ``parameters.binary_data_output`` (all outputs as binary data).
        binary: per requested output, its ``parameters.binary_data`` when given (overrides the default).
    """

    id: str | None
    batch: Batch
    outputs: tuple[str, ...] | None
    binary_default: bool = False
    binary: dict[str, bool] = field(default_factory=dict)

    def binary_outputs(self, outputs: Sequence[str]) -> frozenset[str]:
        """Which of ``outputs`` to return as binary tensor data."""
        return frozenset(o for o in outputs if self.binary.get(o, self.binary_default))


# ------------------------------------------------------------------------------------ helpers


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object body.

    Raises:
        MalformedBody: invalid JSON (with orjson's position) or not an object.
    """
    if not body:
        raise MalformedBody("the request body is empty; expected a JSON object")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        doc = _loads_with_constants(body, exc)
    if type(doc) is not dict:
        raise MalformedBody(f"the request body is a JSON {json_type_name(doc)}; expected an object")
    return doc


def _nan_constant(name: str) -> float | None:
    # NaN is a missing value (as MLflow's serialisers write it); ±Infinity stays a float that the
    # column conversion refuses, naming the column.
    return None if name == "NaN" else float(name)


def _loads_with_constants(body: bytes, error: orjson.JSONDecodeError) -> Any:
    """The JSON that orjson refuses but Python's ``json`` (and so MLflow's scoring server) reads.

    MLflow's serialisers (``ScoringServerClient``, ``convert_input_example_to_serving_input``,
    ``mlflow models predict``) write a missing value as a bare ``NaN``; Python also reads
    ``Infinity``, ``-Infinity`` and numbers beyond the float range (``1e999``) as infinities.
    The result is checked to be something orjson can encode again (no lone surrogates), so
    nothing downstream meets a string it cannot write.

    Raises:
        MalformedBody: with orjson's message, when the body is not JSON for Python either.
    """
    try:
        doc = json.loads(body, parse_constant=_nan_constant)
        orjson.dumps(doc)
    except (ValueError, RecursionError, TypeError, orjson.JSONEncodeError):
        raise MalformedBody(f"the request body is not valid JSON: {error}") from None
    return doc


def header_safe(value: str) -> str:
    """``value`` as an HTTP header value: unchanged when it is printable ASCII without edge spaces and
    without ``%``, else percent-encoded UTF-8 (so a request id with CR/LF or non-Latin-1 characters
    cannot break the response, and ``unquote`` of the header always gives the id back: an id such as
    ``%00`` is sent as ``%2500``).
    """
    if value.isascii() and value.isprintable() and value.strip() == value and "%" not in value:
        return value
    return quote(value, safe="!#$&'()*+,/:;=?@[]~-_.")


def _string_list(value: Any, what: str) -> list[str]:
    if type(value) is not list or not all(type(v) is str for v in value):
        raise MalformedBody(f"{what} must be an array of strings")
    return value


def predictions_as_json(values: np.ndarray) -> Any:
    """An array in a form orjson serialises: numeric/bool contiguous arrays as is, others as lists."""
    if values.dtype.kind in "iufb":
        return np.ascontiguousarray(values)
    return values.tolist()


def v2_datatype_of(values: np.ndarray) -> str:
    """The V2 datatype of an output array."""
    kind = values.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind == "i":
        return "INT64"
    if kind == "u":
        return "UINT64"
    if kind == "f":
        return "FP64"
    return "BYTES"


# ----------------------------------------------------------------------------------------- V2


def parse_v2_infer(body: bytes, schema: InputSchema, json_length: str | None = None) -> V2Request:
    """Parse a V2 ``infer`` request into a batch.

    Column-wise: one tensor per feature, named by column, shape ``[n]`` or ``[n, 1]``.
    Row-wise: exactly one tensor of shape ``[n, k]`` whose name is not a column; its columns are
    named by ``parameters.columns`` (on the tensor or the request) or else are the signature's
    columns in order (then ``k`` must equal the number of columns).

    Binary tensor data extension: with ``json_length`` (the ``Inference-Header-Content-Length``
    header) the body is that many bytes of JSON followed by the data of the inputs that declare
    ``parameters.binary_data_size``, in the order of the inputs (little-endian, row-major; BYTES
    elements as a 4-byte length and UTF-8 bytes). Float NaN in binary data is a missing value.

    Raises:
        MalformedBody, ShapeError, UnknownColumn, MissingColumn, DatatypeError, InputError.
    """
    binary = b""
    if json_length is not None:
        size = _json_length(json_length, len(body))
        body, binary = body[:size], body[size:]
    doc = parse_json_object(body)
    request_id = doc.get("id")
    if request_id is not None and type(request_id) is not str:
        raise MalformedBody(f"'id' must be a string, got a JSON {json_type_name(request_id)}")
    inputs = doc.get("inputs")
    if type(inputs) is not list or not inputs:
        raise MalformedBody("'inputs' must be a non-empty array of tensors")
    parameters = _parameters(doc, "'parameters'")
    binary_default = _flag(parameters, "binary_data_output", "parameters")
    outputs, binary_outputs = _requested_outputs(doc.get("outputs"))
    tensors: list[_Tensor] = []
    offset = 0
    for i, raw in enumerate(inputs):
        tensor, offset = _tensor(i, raw, binary, offset)
        tensors.append(tensor)
    if offset != len(binary):
        raise MalformedBody(
            f"the body has {len(binary)} bytes of binary data after the JSON, but the inputs declare {offset} "
            "(parameters.binary_data_size)"
        )

    def request(batch: Batch) -> V2Request:
        return V2Request(request_id, batch, outputs, binary_default, binary_outputs)

    first = tensors[0]
    columns = first.parameters.get("columns", parameters.get("columns"))
    if len(tensors) == 1 and len(first.shape) == 2 and (columns is not None or first.name not in schema.position):
        return request(_row_wise(first, columns, schema))

    data: dict[str, list[Any]] = {}
    for tensor in tensors:
        if len(tensor.shape) > 2 or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise ShapeError(
                f"input '{tensor.name}' has shape {tensor.shape}; a column-wise input has shape [n] or [n, 1] "
                "(a row-wise request sends a single [n, k] tensor)"
            )
        if tensor.name in data:
            raise MalformedBody(f"input '{tensor.name}' appears more than once")
        values = tensor.flat()
        _check_declared(tensor.name, tensor.datatype, values)
        data[tensor.name] = values
    schema.check_names(data, what="input")
    return request(schema.from_columns(data))


def _json_length(header: str, body_length: int) -> int:
    text = header.strip()
    # ASCII digits only: str.isdigit() also accepts '²' (a Latin-1 header byte), which int() refuses.
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= body_length:
        raise MalformedBody(
            f"Inference-Header-Content-Length must be the length of the JSON part of the body "
            f"(1 to {body_length}); got {header[:40]!r}"
        )
    return int(text)


def _parameters(holder: dict[str, Any], what: str) -> dict[str, Any]:
    """``holder["parameters"]``: an object, or absent/null (no parameters). Raises :class:`MalformedBody`
    for anything else (also ``false``, ``0``, ``[]``, which a truthiness test would take as none)."""
    parameters = holder.get("parameters")
    if parameters is None:
        return {}
    if type(parameters) is not dict:
        raise MalformedBody(f"{what} must be an object")
    return parameters


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if type(value) is not bool:
        raise MalformedBody(f"{where}.{key} must be a boolean")
    return value


@dataclass
class _Tensor:
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any]

    def flat(self) -> list[Any]:
        """Row-major values, checked against the shape (nested arrays must nest as the shape says)."""
        size = 1
        for dim in self.shape:
            size *= dim
        data = self.data
        if data and any(type(v) is list for v in data):
            data = _flatten(self.name, data)
        if len(data) != size:
            raise ShapeError(f"input '{self.name}' has shape {self.shape} ({size} values) but holds {len(data)} values")
        return data


def _flatten(name: str, data: list[Any]) -> list[Any]:
    """Flatten nested arrays level by level; each level must hold only arrays or only values."""
    level = data
    while True:
        kinds = {type(v) is list for v in level}
        if kinds != {True}:
            if len(kinds) > 1:
                raise ShapeError(f"input '{name}' mixes nested arrays and values at the same level of its data")
            return level
        level = list(chain.from_iterable(level))


#: Binary tensor data: little-endian numpy dtype of each fixed-size V2 datatype.
BINARY_DTYPES: dict[str, str] = {
    "BOOL": "u1",
    **{f"INT{b}": f"<i{b // 8}" for b in (8, 16, 32, 64)},
    **{f"UINT{b}": f"<u{b // 8}" for b in (8, 16, 32, 64)},
    **{f"FP{b}": f"<f{b // 8}" for b in (16, 32, 64)},
}


def _tensor(index: int, raw: Any, binary: bytes, offset: int) -> tuple[_Tensor, int]:
    """One input tensor; its data from JSON, or from ``binary`` at ``offset`` (returns the next offset)."""
    if type(raw) is not dict:
        raise MalformedBody(f"inputs[{index}] must be an object with name, shape, datatype and data")
    name = raw.get("name")
    if type(name) is not str:
        raise MalformedBody(f"inputs[{index}] needs a string 'name'")
    shape = raw.get("shape")
    if type(shape) is not list or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise MalformedBody(f"input '{name}' needs a 'shape': a non-empty array of non-negative integers")
    datatype = raw.get("datatype")
    if datatype not in V2_ALLOWED_TYPES:
        raise MalformedBody(
            f"input '{name}' has datatype {datatype!r}; expected one of {', '.join(sorted(V2_ALLOWED_TYPES))}"
        )
    parameters = _parameters(raw, f"input '{name}': 'parameters'")
    size = parameters.get("binary_data_size")
    data = raw.get("data")
    if size is not None:
        if data is not None:
            raise MalformedBody(f"input '{name}' has both 'data' and parameters.binary_data_size")
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise MalformedBody(
                f"input '{name}': parameters.binary_data_size must be a byte count within the "
                f"{len(binary)} bytes of binary data after the JSON (see Inference-Header-Content-Length)"
            )
        data = decode_binary(name, datatype, binary[offset : offset + size])
        offset += size
    elif type(data) is not list:
        raise MalformedBody(f"input '{name}' needs 'data': an array of values")
    return _Tensor(name, shape, datatype, data, parameters), offset


def decode_binary(name: str, datatype: str, raw: bytes) -> list[Any]:
    """Decode one tensor's binary data into a flat list of Python values (NaN floats are missing values).

    Raises:
        ShapeError: the byte count is not a whole number of elements.
        DatatypeError: a BOOL byte other than 0/1, or BYTES that are not UTF-8.
    """
    if datatype == "BYTES":
        values: list[Any] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise ShapeError(f"input '{name}': BYTES data ends inside an element's 4-byte length")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise ShapeError(f"input '{name}': a BYTES element of {length} bytes runs past the tensor's data")
            try:
                values.append(raw[offset : offset + length].decode("utf-8"))
            except UnicodeDecodeError:
                raise DatatypeError(f"input '{name}': a BYTES element is not UTF-8 text") from None
            offset += length
        return values
    dtype = np.dtype(BINARY_DTYPES[datatype])
    if len(raw) % dtype.itemsize:
        raise ShapeError(f"input '{name}': {len(raw)} bytes is not a whole number of {datatype} elements")
    array = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL":
        if array.size and array.max() > 1:
            raise DatatypeError(f"input '{name}': BOOL binary data must hold bytes 0 or 1")
        return array.astype(bool).tolist()
    if dtype.kind == "f":
        out = array.astype(np.float64).tolist()
        return [None if math.isnan(v) else v for v in out] if np.isnan(array).any() else out
    return array.tolist()


def _bounds(dtype: np.dtype[Any]) -> tuple[int | float, int | float]:
    if dtype.kind == "f":
        finfo = np.finfo(dtype)
        return float(finfo.min), float(finfo.max)
    iinfo = np.iinfo(dtype)
    return int(iinfo.min), int(iinfo.max)


#: ``(lowest, highest)`` finite value of each numeric V2 datatype (numpy's type info of its binary dtype).
V2_RANGES: dict[str, tuple[int | float, int | float]] = {
    datatype: _bounds(np.dtype(code)) for datatype, code in BINARY_DTYPES.items() if datatype != "BOOL"
}


def _check_declared(name: str, datatype: str, values: Sequence[Any]) -> None:
    """JSON ``values`` of input ``name`` must hold what ``datatype`` says: its Python types
    (:data:`V2_ALLOWED_TYPES`) and its range (:data:`V2_RANGES`; infinities are left to the
    column check, which refuses them as not finite). Raises DatatypeError naming both."""
    allowed = V2_ALLOWED_TYPES[datatype]
    types = set(map(type, values))
    if not types <= allowed:
        bad = next(v for v in values if type(v) not in allowed)
        raise DatatypeError(f"input '{name}' is declared {datatype} but holds a JSON {json_type_name(bad)} ({bad!r})")
    if datatype in V2_RANGES:
        low, high = V2_RANGES[datatype]
        bad = next((v for v in values if v is not None and not low <= v <= high and not math.isinf(v)), None)
        if bad is not None:
            raise DatatypeError(
                f"input '{name}' is declared {datatype} but holds {bad!r}, outside the {datatype} range [{low}, {high}]"
            )


def _row_wise(tensor: _Tensor, columns: Any, schema: InputSchema) -> Batch:
    n_rows, width = tensor.shape
    names: list[str] | None = None
    if columns is not None:
        names = _string_list(columns, "parameters.columns")
        if len(names) != width:
            raise ShapeError(f"input '{tensor.name}' has {width} columns but parameters.columns names {len(names)}")
    elif width != len(schema):
        raise ShapeError(
            f"row-wise input '{tensor.name}' has {width} columns but the model has {len(schema)}; "
            "name them with parameters.columns"
        )
    data = tensor.data
    if data and type(data[0]) is list:
        if len(data) != n_rows:
            raise ShapeError(f"input '{tensor.name}' has shape {tensor.shape} but holds {len(data)} rows")
        rows = data
        _check_declared(tensor.name, tensor.datatype, list(chain.from_iterable(r for r in rows if type(r) is list)))
    else:
        flat = tensor.flat()
        _check_declared(tensor.name, tensor.datatype, flat)
        rows = [flat[i * width : (i + 1) * width] for i in range(n_rows)]
    return schema.from_rows(rows, names)


def _requested_outputs(raw: Any) -> tuple[tuple[str, ...] | None, dict[str, bool]]:
    """The requested output names and, for those with ``parameters.binary_data``, that flag."""
    if raw is None:
        return None, {}
    if type(raw) is not list or not all(type(o) is dict and type(o.get("name")) is str for o in raw):
        raise MalformedBody("'outputs' must be an array of objects with a string 'name'")
    if not raw:  # an empty list asks for nothing in particular: all outputs, as when absent
        return None, {}
    binary: dict[str, bool] = {}
    for output in raw:
        parameters = _parameters(output, f"output '{output['name']}': 'parameters'")
        if "classification" in parameters:  # tritonclient's class_count
            raise InputError(
                f"output '{output['name']}': parameters.classification asks for the classification extension, "
                f"which this server does not implement (its extensions: {', '.join(V2_EXTENSIONS)})"
            )
        if "binary_data" in parameters:
            binary[output["name"]] = _flag(parameters, "binary_data", f"output '{output['name']}' parameters")
    return tuple(o["name"] for o in raw), binary


def check_outputs(requested: tuple[str, ...] | None, available: Sequence[str]) -> tuple[str, ...]:
    """The outputs to return: all available ones by default.

    Raises:
        InputError: a requested output that the model does not have.
    """
    if requested is None:
        return tuple(available)
    unknown = [o for o in requested if o not in available]
    if unknown:
        raise InputError(f"unknown output {', '.join(map(repr, unknown))}; the model's outputs are {list(available)}")
    return requested


def encode_v2_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str,
    prediction: Prediction,
    outputs: Sequence[str],
    classes: list[Any] | None,
    binary: frozenset[str] = frozenset(),
) -> tuple[bytes, int | None]:
    """Encode a V2 infer response (``predict``: shape ``[n]``; ``predict_proba``: ``[n, n_classes]``, row-major).

    Args:
        binary: outputs to send as binary tensor data after the JSON (their JSON has
            ``parameters.binary_data_size`` instead of ``data``).

    Returns:
        The body, and the length of its JSON part when binary data follows it (the
        ``Inference-Header-Content-Length`` header), else None.
    """
    encoded: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    pred = prediction.predict
    for name in outputs:
        if name == OUTPUT_PREDICT:
            datatype = v2_datatype_of(pred)
            tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": [len(pred)]}
            if name in binary:
                chunks.append(encode_binary(datatype, pred))
                tensor["parameters"] = {"binary_data_size": len(chunks[-1])}
            else:
                tensor["data"] = predictions_as_json(pred)
            encoded.append(tensor)
        elif name == OUTPUT_PROBA and prediction.proba is not None:
            proba = np.ascontiguousarray(prediction.proba, dtype=np.float64)
            tensor = {"name": name, "datatype": "FP64", "shape": list(proba.shape), "parameters": {"classes": classes}}
            if name in binary:
                chunks.append(encode_binary("FP64", proba))
                tensor["parameters"]["binary_data_size"] = len(chunks[-1])
            else:
                tensor["data"] = proba.ravel()
            encoded.append(tensor)
    doc = {"model_name": model_name, "model_version": model_version, "id": request_id, "outputs": encoded}
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return head, None
    return b"".join([head, *chunks]), len(head)


def encode_binary(datatype: str, values: np.ndarray) -> bytes:
    """One output's binary tensor data: little-endian row-major; BYTES as 4-byte length + UTF-8 per element."""
    if datatype == "BYTES":
        parts = []
        for value in values.ravel().tolist():
            data = str(value).encode("utf-8")
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=BINARY_DTYPES[datatype]).tobytes()


def v2_model_metadata(
    *, name: str, versions: list[str], schema: InputSchema, outputs: list[dict[str, Any]], parameters: dict[str, Any]
) -> bytes:
    """Encode the V2 model metadata response (inputs are the signature's columns, shape ``[-1]``)."""
    inputs = [
        {
            "name": c.name,
            "datatype": c.v2_datatype,
            "shape": [-1],
            "parameters": {"mlflow_type": c.kind, "required": c.required},
        }
        for c in schema.columns
    ]
    doc = {
        "name": name,
        "versions": versions,
        "platform": "sklearn",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": parameters,
    }
    return orjson.dumps(doc)


# ------------------------------------------------------------------------------------- MLflow


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header (JSON when absent).

    Raises:
        UnsupportedMediaType: a charset other than UTF-8.
    """
    if not content_type:
        return "application/json"
    mime, *params = (part.strip() for part in content_type.split(";"))
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"only UTF-8 is supported, got charset {value.strip()!r}")
    return mime.lower()


def parse_invocations(body: bytes, content_type: str | None, schema: InputSchema) -> Batch:
    """Parse an MLflow ``/invocations`` request (JSON formats or CSV with a header row).

    Raises:
        UnsupportedMediaType, MalformedBody, ShapeError, UnknownColumn, MissingColumn, DatatypeError.
    """
    mime = media_type(content_type)
    if mime == "text/csv":
        return parse_csv(body, schema)
    if mime != "application/json":
        raise UnsupportedMediaType(f"unsupported Content-Type {content_type!r}; use application/json or text/csv")
    doc = parse_json_object(body)
    formats = [k for k in MLFLOW_FORMATS if k in doc]
    others = [k for k in doc if k not in MLFLOW_FORMATS and k != "params"]
    if len(formats) != 1 or others:
        raise MalformedBody(
            f"the JSON object must have exactly one of the fields {', '.join(MLFLOW_FORMATS)} "
            f"(and optionally 'params'); got {sorted(doc)}"
        )
    key = formats[0]
    payload = doc[key]
    if key == "dataframe_split":
        if type(payload) is not dict:
            raise MalformedBody("'dataframe_split' must be an object with 'columns' and 'data'")
        if "columns" not in payload:
            raise MalformedBody("'dataframe_split' needs 'columns' (inputs are matched by column name)")
        columns = _string_list(payload["columns"], "dataframe_split.columns")
        rows = payload.get("data")
        if type(rows) is not list:
            raise MalformedBody("'dataframe_split.data' must be an array of rows")
        return schema.from_rows(rows, columns)
    if key == "dataframe_records":
        if type(payload) is not list:
            raise MalformedBody("'dataframe_records' must be an array of objects")
        return schema.from_records(payload)
    return _parse_tensor_style(key, payload, schema)


def _parse_tensor_style(key: str, payload: Any, schema: InputSchema) -> Batch:
    """``instances`` / ``inputs``: a dict of columns, a list of records, or a list of rows (signature order)."""
    if type(payload) is dict:
        data: dict[str, list[Any]] = {}
        for name, values in payload.items():
            data[name] = values if type(values) is list else [values]
        return schema.from_columns(data)
    if type(payload) is not list:
        raise MalformedBody(f"'{key}' must be an object of columns or an array of records or rows")
    if not payload:
        raise ShapeError(f"'{key}' holds no rows")
    first = payload[0]
    if type(first) is dict:
        return schema.from_records(payload)
    if type(first) is list:
        return schema.from_rows(payload)
    if len(schema) == 1:
        return schema.from_columns({schema.names[0]: payload})
    raise MalformedBody(
        f"'{key}' is an array of scalars but the model has {len(schema)} columns; "
        "send records ({column: value}) or a dict of columns"
    )


def parse_csv(body: bytes, schema: InputSchema) -> Batch:
    """Parse CSV with a header row (as written by ``DataFrame.to_csv(index=False)``).

    Raises:
        MalformedBody (not UTF-8, no header), ShapeError (ragged rows), and the schema's errors.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"the CSV body is not valid UTF-8: {exc}") from None
    try:
        records = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise MalformedBody(f"the CSV body cannot be parsed: {exc}") from None
    records = [r for r in records if r]
    if not records:
        raise MalformedBody("the CSV body is empty; expected a header row with the column names")
    header, *rows = records
    width = len(header)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ShapeError(f"CSV row {i + 1} has {len(row)} fields but the header has {width}")
    cleaned = [[None if cell in CSV_MISSING else cell for cell in row] for row in rows]
    return schema.from_rows(cleaned, [h.strip() for h in header], csv=True)


def encode_invocations_response(prediction: Prediction) -> bytes:
    """``{"predictions": [...]}``, as ``mlflow models serve`` answers for a scikit-learn model."""
    return orjson.dumps({"predictions": predictions_as_json(prediction.predict)}, option=orjson.OPT_SERIALIZE_NUMPY)


# ----------------------------------------------------------------------------------- feedback


def parse_feedback(body: bytes) -> list[tuple[str, Any]]:
    """Parse feedback: ``{"request_id": id, "label": y}`` or ``{"feedback": [{...}, ...]}``.

    Returns:
        (request id, label) pairs; labels are JSON scalars.

    Raises:
        MalformedBody: any other structure, an empty id, or a non-scalar label.
    """
    doc = parse_json_object(body)
    items = doc["feedback"] if "feedback" in doc else [doc]
    if type(items) is not list or not items:
        raise MalformedBody("'feedback' must be a non-empty array of {request_id, label} objects")
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise MalformedBody(f"feedback[{i}] must be an object with 'request_id' and 'label'")
        request_id, label = item.get("request_id"), item.get("label")
        if type(request_id) is not str or not request_id:
            raise MalformedBody(f"feedback[{i}] needs a non-empty string 'request_id'")
        if type(label) not in (str, int, float, bool):
            raise MalformedBody(f"feedback[{i}] needs a scalar 'label' (string, number or boolean)")
        out.append((request_id, label))
    return out
