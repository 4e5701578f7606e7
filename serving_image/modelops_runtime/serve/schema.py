"""The model's input schema and the conversion of request values into typed column arrays.

Pure (numpy/pandas only, no web framework, no MLflow calls). Columns are always matched to the
signature **by name**; the only positional case is a row whose values come without column names
(V2 row-wise tensors without ``parameters.columns``, MLflow ``instances``/``inputs`` given as a
list of lists), which are read in the signature's order, as MLflow does, and only when the row
has exactly as many values as the signature has columns.

Coercion rules (anything else is a :class:`~.errors.DatatypeError` naming the column):

=========================  ===================================================================
column type (signature)    accepted JSON values
=========================  ===================================================================
double, float              numbers; numeric strings such as ``"3.5"`` or ``"-1e3"``
long, integer              integers; floats and numeric strings with an integral value (``2.0``),
                           within the int64 range
boolean                    ``true``/``false``
string                     strings; integers (converted with ``str``)
any type                   ``null`` is a missing value (NaN), handled by the model's pipeline
=========================  ===================================================================

Booleans are never numbers, floats are never strings, and ``"nan"``/``"inf"``/``""`` are not
numeric strings (use ``null`` for a missing value; in CSV an empty cell, ``NA`` or ``NaN`` is
missing). A bare JSON ``NaN`` is a missing value (read in :mod:`.protocol`); infinite numbers
(JSON ``Infinity``, ``1e999``, binary data) are refused naming the column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from .errors import DatatypeError, MalformedBody, MissingColumn, ShapeError, UnknownColumn

FLOAT_KINDS = frozenset({"double", "float"})
INT_KINDS = frozenset({"long", "integer"})
NUMERIC_KINDS = FLOAT_KINDS | INT_KINDS
SUPPORTED_KINDS = NUMERIC_KINDS | {"boolean", "string"}

#: Open Inference Protocol datatype reported for each signature column type.
V2_DATATYPE = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
}

_NONE = type(None)
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_JSON_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def json_type_name(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class ColumnSpec:
    """One input column of the model's signature.

    Attributes:
        name: column name, as in the training frame.
        kind: MLflow column type: ``double``, ``float``, ``long``, ``integer``, ``boolean`` or ``string``.
        required: whether a request must contain the column (an optional column that is absent
            is filled with missing values).
    """

    name: str
    kind: str
    required: bool = True

    @property
    def v2_datatype(self) -> str:
        """The Open Inference Protocol datatype of this column."""
        return V2_DATATYPE[self.kind]


@dataclass
class Batch:
    """Typed model input of ``n_rows`` rows, columns in the schema's order.

    Exactly one of ``columns`` (name → 1-D array) and ``matrix`` (``(n_rows, n_columns)``
    float64, only when every column is numeric) is set by the builders; the other views are
    derived on demand.
    """

    n_rows: int
    names: tuple[str, ...]
    columns: dict[str, np.ndarray] | None = None
    matrix: np.ndarray | None = None
    int_names: frozenset[str] = field(default_factory=frozenset)

    def column_arrays(self) -> dict[str, np.ndarray]:
        """Name → 1-D array of length ``n_rows`` (views of ``matrix`` when it is set)."""
        if self.columns is None:
            assert self.matrix is not None
            self.columns = {name: self.matrix[:, j] for j, name in enumerate(self.names)}
        return self.columns

    def as_matrix(self) -> np.ndarray:
        """The ``(n_rows, n_columns)`` float64 matrix; only valid for all-numeric schemas."""
        if self.matrix is None:
            assert self.columns is not None
            self.matrix = np.column_stack([self.columns[n].astype(np.float64, copy=False) for n in self.names])
        return self.matrix

    def frame(self) -> pd.DataFrame:
        """A pandas DataFrame with the schema's columns in order (integer columns stay int64 when complete)."""
        if self.columns is None and self.matrix is not None and not self.int_names:
            return pd.DataFrame(self.matrix, columns=list(self.names), copy=False)
        arrays = self.column_arrays()
        data: dict[str, np.ndarray] = {}
        for name in self.names:
            values = arrays[name]
            if name in self.int_names and values.dtype.kind == "f" and not np.isnan(values).any():
                values = values.astype(np.int64)
            data[name] = values
        return pd.DataFrame(data, copy=False)


class InputSchema:
    """The model's input columns (from its MLflow signature), and request → :class:`Batch` conversion.

    Args:
        columns: the columns, in the order the estimator was fitted with.

    Raises:
        ValueError: when a column type is not supported (datetime, binary, arrays) or names repeat.
    """

    def __init__(self, columns: Sequence[ColumnSpec]) -> None:
        unsupported = [f"{c.name} ({c.kind})" for c in columns if c.kind not in SUPPORTED_KINDS]
        if unsupported:
            raise ValueError(f"unsupported column types in the model signature: {', '.join(unsupported)}")
        self.columns = tuple(columns)
        self.names = tuple(c.name for c in columns)
        if len(set(self.names)) != len(self.names):
            raise ValueError("the model signature repeats a column name")
        self.by_name = {c.name: c for c in columns}
        self.position = {name: j for j, name in enumerate(self.names)}
        self.numeric = all(c.kind in NUMERIC_KINDS for c in columns)
        self.int_names = frozenset(c.name for c in columns if c.kind in INT_KINDS)
        self.required = tuple(c.name for c in columns if c.required)

    def __len__(self) -> int:
        return len(self.columns)

    # ----------------------------------------------------------------------------------- checks

    def check_names(self, names: Iterable[str], *, what: str = "column") -> None:
        """Raise :class:`UnknownColumn` for names not in the schema, :class:`MissingColumn` for absent required ones."""
        given = set(names)
        unknown = [n for n in given if n not in self.position]
        if unknown:
            raise UnknownColumn(
                f"unknown {what}{'s' if len(unknown) > 1 else ''} {_quoted(sorted(unknown))}; "
                f"the model's columns are {_quoted(self.names)}"
            )
        missing = [n for n in self.required if n not in given]
        if missing:
            raise MissingColumn(f"missing required column{'s' if len(missing) > 1 else ''} {_quoted(missing)}")

    # -------------------------------------------------------------------------------- builders

    def from_columns(self, data: Mapping[str, Sequence[Any]], *, csv: bool = False) -> Batch:
        """Build a batch from column name → list of values (all lists of the same length).

        Raises:
            UnknownColumn, MissingColumn, ShapeError, DatatypeError.
        """
        self.check_names(data)
        lengths = {len(v) for v in data.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k}={len(v)}" for k, v in data.items())
            raise ShapeError(f"columns have different lengths: {sizes}")
        n_rows = lengths.pop() if lengths else 0
        columns: dict[str, np.ndarray] = {}
        for spec in self.columns:
            values = data.get(spec.name)
            if values is None:
                columns[spec.name] = _missing_column(spec, n_rows)
            else:
                columns[spec.name] = convert_column(spec, values, csv=csv)
        return Batch(n_rows, self.names, columns=columns, int_names=self.int_names)

    def from_records(self, records: Sequence[Any]) -> Batch:
        """Build a batch from a list of ``{column: value}`` objects (a key absent in a record is a missing value).

        Raises:
            MalformedBody (a record is not an object), UnknownColumn, MissingColumn, DatatypeError.
        """
        keys: set[str] = set()
        for i, record in enumerate(records):
            if type(record) is not dict:
                raise MalformedBody(f"record {i} is a JSON {json_type_name(record)}, expected an object")
            keys.update(record)
        self.check_names(keys)
        data = {name: [r.get(name) for r in records] for name in self.names if name in keys}
        batch = self.from_columns(data)
        batch.n_rows = len(records)
        return batch

    def from_rows(self, rows: Sequence[Any], names: Sequence[str] | None = None, *, csv: bool = False) -> Batch:
        """Build a batch from rows (lists of values), named by ``names`` or else in the signature's order.

        Raises:
            MalformedBody (a row is not a list, names repeat), ShapeError (row length differs from the
            names), UnknownColumn, MissingColumn, DatatypeError.
        """
        if names is None:
            names = self.names
            positional = True
        else:
            if len(set(names)) != len(names):
                raise MalformedBody(f"column names repeat: {_quoted(names)}")
            self.check_names(names)
            positional = False
        width = len(names)
        for i, row in enumerate(rows):
            if type(row) is not list:
                raise MalformedBody(f"row {i} is a JSON {json_type_name(row)}, expected an array")
            if len(row) != width:
                hint = (
                    f"rows without column names are read in the signature's order and need {width} values"
                    if positional
                    else f"there are {width} column names"
                )
                raise ShapeError(f"row {i} has {len(row)} values but {hint}")
        if self.numeric and not csv and rows and width == len(self.names):  # all columns present
            matrix = self._numeric_matrix(rows, names)
            if matrix is not None:
                return Batch(len(rows), self.names, matrix=matrix, int_names=self.int_names)
        if rows:
            data = {name: list(col) for name, col in zip(names, zip(*rows, strict=True), strict=True)}
        else:
            data = {name: [] for name in names}
        return self.from_columns(data, csv=csv)

    def _numeric_matrix(self, rows: Sequence[list[Any]], names: Sequence[str]) -> np.ndarray | None:
        """Fast path: all values are numbers (or null) → one float64 matrix in schema order; else None."""
        types = set(map(type, chain.from_iterable(rows)))
        if not types <= {float, int, _NONE}:
            return None
        try:
            matrix = np.array(rows, dtype=np.float64)
        except OverflowError:
            return None
        if np.isinf(matrix).any():
            return None  # the column conversion names the column
        if tuple(names) != self.names:
            matrix = matrix[:, [names.index(n) for n in self.names]]
        for name in self.int_names:
            column = matrix[:, self.position[name]]
            _check_integral(self.by_name[name], column)
        return matrix


def convert_column(spec: ColumnSpec, values: Sequence[Any], *, csv: bool = False) -> np.ndarray:
    """Convert one column's JSON values to a numpy array following the module's coercion rules.

    Args:
        spec: the column.
        values: parsed JSON scalars (``None`` = missing); with ``csv=True`` all values are strings
            or ``None``.

    Returns:
        float64 (double/float, and integer columns with missing values), int64 (complete integer
        columns), bool (complete boolean columns) or object (strings; missing = NaN).

    Raises:
        DatatypeError: naming the column, the expected type and the first offending value.
    """
    types = set(map(type, values))
    kind = spec.kind
    if kind in NUMERIC_KINDS:
        if types <= {float, int, _NONE}:
            if kind in INT_KINDS and types <= {int}:
                try:
                    return np.array(values, dtype=np.int64)
                except OverflowError:
                    raise DatatypeError(f"column '{spec.name}' has an integer out of the 64-bit range") from None
            array = _float_array(spec, values)
        elif types <= {float, int, _NONE, str}:
            array = _float_array(spec, [_parse_number(spec, v) if type(v) is str else v for v in values])
        else:
            _raise_type(spec, values, {float, int, _NONE, str})
        _check_finite(spec, array)
        if kind in INT_KINDS:
            _check_integral(spec, array)
            if types <= {int, str} and not np.isnan(array).any():
                return array.astype(np.int64)
        return array
    if kind == "string":
        if types <= {str}:
            return np.array(values, dtype=object)
        if types <= {str, _NONE, int}:
            return np.array([np.nan if v is None else (v if type(v) is str else str(v)) for v in values], dtype=object)
        _raise_type(spec, values, {str, _NONE, int})
    if kind == "boolean":
        if types <= {bool}:
            return np.array(values, dtype=bool)
        if csv and types <= {str, _NONE}:
            return np.array([_parse_csv_bool(spec, v) for v in values], dtype=object)
        if types <= {bool, _NONE}:
            return np.array([np.nan if v is None else v for v in values], dtype=object)
        _raise_type(spec, values, {bool, _NONE})
    raise DatatypeError(f"column '{spec.name}' has the unsupported type {kind}")  # excluded by InputSchema


def _missing_column(spec: ColumnSpec, n_rows: int) -> np.ndarray:
    """An absent optional column: all values missing."""
    if spec.kind in NUMERIC_KINDS:
        return np.full(n_rows, np.nan)
    return np.full(n_rows, np.nan, dtype=object)


def _parse_number(spec: ColumnSpec, text: str) -> float:
    if not _DECIMAL.fullmatch(text):
        raise DatatypeError(f"column '{spec.name}' expects {spec.kind} values; got the non-numeric string {text!r}")
    return float(text)


def _parse_csv_bool(spec: ColumnSpec, text: str | None) -> Any:
    if text is None:
        return np.nan
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise DatatypeError(f"column '{spec.name}' expects boolean values; got {text!r}")


def _float_array(spec: ColumnSpec, values: Sequence[Any]) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:
        raise DatatypeError(f"column '{spec.name}' has a number beyond the 64-bit float range") from None


def _check_finite(spec: ColumnSpec, array: np.ndarray) -> None:
    """Refuse ±Infinity (JSON ``Infinity``, ``1e999``, binary data): a model cannot use it and it is not missing."""
    if np.isinf(array).any():
        bad = float(array[np.isinf(array)][0])
        raise DatatypeError(
            f"column '{spec.name}' expects finite numbers; got {bad} (send null or NaN for a missing value)"
        )


#: The int64 range as float64 bounds: ``-2**63 <= v < 2**63`` (both exactly representable).
_INT64_LOW, _INT64_HIGH = -(2.0**63), 2.0**63
#: Integers a float64 holds with no neighbour rounding to them: ``|v| < 2**53`` (IEEE 754 binary64:
#: a 53-bit significand).
_FLOAT_EXACT = 2.0**53


def _check_integral(spec: ColumnSpec, array: np.ndarray) -> None:
    """Refuse non-integral values, values no int64 holds (numpy's cast of ``1e300`` or of the string
    ``"1e19"`` to int64 gives -2**63 silently, so the model would get a wrong number), and integers
    beyond ±2**53 on this float64 path (not exact: the model could get a neighbouring number)."""
    finite = array[~np.isnan(array)]
    if not finite.size:
        return
    if not np.array_equal(finite, np.floor(finite)):
        bad = float(finite[finite != np.floor(finite)][0])
        raise DatatypeError(f"column '{spec.name}' expects {spec.kind} values; got the non-integral number {bad!r}")
    if finite.min() < _INT64_LOW or finite.max() >= _INT64_HIGH:
        raise DatatypeError(f"column '{spec.name}' has an integer out of the 64-bit range")
    if np.abs(finite).max() >= _FLOAT_EXACT:  # 2**53 itself may be the rounding of 2**53 + 1
        # Here the values went through float64: JSON numbers with a fraction or exponent, strings, a
        # column with missing values, or a JSON integer beyond int64 that the JSON parser read as a
        # float (-2**63 - 1 became -2**63). Beyond 2**53 that may have changed the number.
        raise DatatypeError(
            f"column '{spec.name}' has an integer beyond ±2**53 that is not exact as a 64-bit float "
            "(sent as a float or a string, in a column with missing values, or beyond int64); "
            "send it as a JSON integer in a column without missing values"
        )


def _raise_type(spec: ColumnSpec, values: Sequence[Any], allowed: set[type]) -> NoReturn:
    for i, value in enumerate(values):
        if type(value) not in allowed:
            raise DatatypeError(
                f"column '{spec.name}' expects {spec.kind} values; row {i} holds a JSON {json_type_name(value)} "
                f"({_short(value)})"
            )
    raise AssertionError("unreachable: a value outside the allowed types was found by set(map(type))")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _quoted(names: Iterable[str], limit: int = 20) -> str:
    items = list(names)
    text = ", ".join(f"'{n}'" for n in items[:limit])
    return text if len(items) <= limit else f"{text}, ... ({len(items)} in all)"
