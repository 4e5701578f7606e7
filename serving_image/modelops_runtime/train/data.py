"""Loading the training dataset: files through fsspec/pandas and built-in real datasets.

Supported ``data.uri`` forms:

* a local or mounted path, ``file://``, ``http(s)://``, ``s3://`` (with ``s3fs``) or any other
  fsspec protocol whose implementation is installed; CSV or Parquet, picked from the extension
  (``.csv``, ``.csv.gz``, ``.parquet``, ``.pq``) when ``data.format`` is ``auto``;
* ``sklearn://breast_cancer|wine|iris|digits|diabetes``: scikit-learn's bundled copies
  (``as_frame=True``); the label column is ``target`` (integer class labels for classification);
* ``penguins://``: the ``palmerpenguins`` package (numeric and categorical columns, with NaNs).

Nothing is downloaded for the built-in datasets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from modelops.api.modelversion import DataSpec

from ..jobrun import one_line
from .errors import InvalidInput

SKLEARN_DATASETS = ("breast_cancer", "wine", "iris", "digits", "diabetes")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parquet.gz")


def _sklearn_loader(name: str) -> Callable[..., Any]:
    from sklearn import datasets

    loaders: dict[str, Callable[..., Any]] = {
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
        "digits": datasets.load_digits,
        "diabetes": datasets.load_diabetes,
    }
    return loaders[name]


def load_builtin(uri: str) -> pd.DataFrame:
    """Load ``sklearn://<name>`` or ``penguins://`` as a frame; raises :class:`InvalidInput` for an unknown name."""
    scheme, _, rest = uri.partition("://")
    name = rest.strip("/")
    if scheme == "sklearn":
        if name not in SKLEARN_DATASETS:
            raise InvalidInput(f"unknown built-in dataset {uri!r}; known: sklearn://{{{','.join(SKLEARN_DATASETS)}}}")
        frame = _sklearn_loader(name)(as_frame=True).frame
        return pd.DataFrame(frame)
    if scheme == "penguins":
        if name not in ("", "penguins"):
            raise InvalidInput(f"unknown built-in dataset {uri!r}; use penguins://")
        from palmerpenguins import load_penguins

        return pd.DataFrame(load_penguins())
    raise InvalidInput(f"{uri!r} is not a built-in dataset")


def is_builtin(uri: str) -> bool:
    """True for ``sklearn://…`` and ``penguins://…`` URIs."""
    return uri.startswith(("sklearn://", "penguins://"))


def detect_format(uri: str, declared: str = "auto") -> str:
    """``csv`` or ``parquet``: ``declared`` unless ``auto``, else from the URI's extension.

    Raises :class:`InvalidInput` when ``auto`` cannot tell.
    """
    if declared != "auto":
        return declared
    path = uri.split("?", 1)[0].lower()
    if path.endswith(_CSV_SUFFIXES):
        return "csv"
    if path.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise InvalidInput(f"cannot tell the format of {uri!r} from its extension; set data.format to csv or parquet")


class DatasetUnavailable(Exception):
    """The dataset's storage could not be reached (connection refused, timeout): a failure worth a retry.

    fsspec's HTTP filesystem reports an unreachable server as ``FileNotFoundError`` too (with the
    connection error as its context), so the chain of causes decides (see :func:`unreachable`).
    """


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` or any exception it was raised from is a connection error or a timeout."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _root(exc: BaseException) -> BaseException:
    while (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def load_file(uri: str, fmt: str) -> pd.DataFrame:
    """Read a CSV or Parquet file through fsspec.

    Raises :class:`InvalidInput` when missing or unreadable, :class:`DatasetUnavailable` on a
    connection error or timeout.
    """
    try:
        with fsspec.open(uri, mode="rb", compression="infer") as handle:
            if fmt == "csv":
                return pd.read_csv(handle)
            return pd.read_parquet(handle)
    except FileNotFoundError as exc:
        if unreachable(exc):  # fsspec's HTTP filesystem: connection refused is "not found"
            root = _root(exc)
            raise DatasetUnavailable(f"cannot reach dataset {uri}: {type(root).__name__}: {one_line(root)}") from exc
        raise InvalidInput(f"dataset not found: {uri}") from exc
    except PermissionError as exc:
        raise InvalidInput(f"dataset not readable (permission denied): {uri}") from exc
    except (ConnectionError, TimeoutError) as exc:  # transient: not invalid input, the Job may retry
        raise DatasetUnavailable(f"cannot reach dataset {uri}: {exc}") from exc
    except ImportError as exc:  # e.g. s3:// without s3fs
        raise InvalidInput(f"cannot read {uri}: {exc}") from exc
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "404" in first or "Not Found" in first:
            raise InvalidInput(f"dataset not found: {uri}") from exc
        raise InvalidInput(f"cannot read {fmt} dataset {uri}: {first}") from exc


def load_dataset(spec: DataSpec) -> pd.DataFrame:
    """Load the frame ``spec`` points at (see the module docstring); raises :class:`InvalidInput`.

    An empty frame is invalid input too.
    """
    if is_builtin(spec.uri):
        frame = load_builtin(spec.uri)
    else:
        frame = load_file(spec.uri, detect_format(spec.uri, spec.format))
    if frame.empty:
        raise InvalidInput(f"dataset {spec.uri} has no rows")
    return frame


def dataset_hash(frame: pd.DataFrame) -> str:
    """SHA-256 (hex) of the frame's content: column names, dtypes and every value (row order matters).

    Uses ``pandas.util.hash_pandas_object`` per row, which is stable across processes and platforms.
    """
    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{t}" for c, t in zip(frame.columns, frame.dtypes, strict=True)).encode())
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    digest.update(row_hashes.tobytes())
    return digest.hexdigest()
